package deploy

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateEnvRefusesWhatAnEnvironmentCannotHold(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string // "" = valid
	}{
		{map[string]string{"A": "x", "B_2": "", "C": "spaces, = and ünïcode"}, ""},
		{map[string]string{"V": "a\x00b"}, "env value of V contains a NUL byte"},
		{map[string]string{"V": "\x00"}, "env value of V contains a NUL byte"},
		{map[string]string{"A\x00B": "x"}, `env name "A\x00B" is not valid`},
		{map[string]string{"1BAD": "x"}, `env name "1BAD" is not valid`},
		{map[string]string{"PORT": "1"}, "set by the agent"},
	} {
		err := ValidateEnv(tc.env)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.env, err)
		case tc.want != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want ErrInvalid with %q", tc.env, err, tc.want)
		}
	}
	req := Request{Repo: "https://example.com/app.git", Env: map[string]string{"V": "a\x00b"}}
	if err := req.check(); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Fatalf("a deploy request with a NUL in an env value: %v", err)
	}
}
