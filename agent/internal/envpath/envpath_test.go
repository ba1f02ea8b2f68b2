package envpath

import (
	"slices"
	"testing"
)

func TestPrepend(t *testing.T) {
	env := []string{"HOME=/h", "PATH=/usr/bin", "PATH=/bin"}
	got := Prepend(env, []string{"/app/bin", "/venv/bin"})
	want := []string{"HOME=/h", "PATH=/usr/bin", "PATH=/bin", "PATH=/app/bin:/venv/bin:/bin"}
	if !slices.Equal(got, want) {
		t.Fatalf("Prepend = %q, want %q", got, want)
	}
	if len(env) != 3 {
		t.Fatalf("env changed: %q", env)
	}
	if got := Prepend([]string{"A=1"}, []string{"/x"}); !slices.Equal(got, []string{"A=1", "PATH=/x"}) {
		t.Fatalf("no PATH: %q", got)
	}
	if got := Prepend(env, nil); !slices.Equal(got, env) {
		t.Fatalf("no dirs: %q", got)
	}
}
