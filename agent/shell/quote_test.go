package shell

import (
	"context"
	"os/exec"
	"testing"

	"github.com/coder-slots/coder-slots/agent/reaper"
)

func TestQuoteIsReadBackBySh(t *testing.T) {
	for in, want := range map[string]string{
		"server.js":   "server.js",
		"a b":         "'a b'",
		"it's":        `'it'\''s'`,
		"$(rm -rf x)": "'$(rm -rf x)'",
		"":            "''",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %q, want %q", in, got, want)
		}
		// The real sh reads it back as the one word it was.
		out, err := reaper.Output(context.Background(), exec.Command("sh", "-c", "printf %s "+Quote(in)))
		if err != nil || string(out) != in {
			t.Errorf("sh read %q back as %q (%v)", in, out, err)
		}
	}
}
