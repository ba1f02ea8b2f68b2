package gitpush

import (
	"strings"
	"testing"
)

// FuzzParseUpdates: whatever a pusher's git sends to pre-receive,
// ParseUpdates does not panic, and every update it returns has full
// lowercase hex ids (nothing a git command could read as an option) and
// a ref without blanks.
func FuzzParseUpdates(f *testing.F) {
	const id = "0123456789abcdef0123456789abcdef01234567"
	for _, seed := range []string{
		zero + " " + id + " refs/heads/main\n",
		id + " " + zero + " refs/heads/main\n\n" + id + " " + id + " refs/tags/v1\n",
		"--all --all refs/heads/main\n",
		id + " --end-of-options refs/heads/main\n",
		strings.ToUpper(id) + " " + id + " refs/heads/main\n",
		id + " " + id + "\n",
		id + " " + id + " refs/heads/a b\n",
		id + "\t" + id + "\trefs/heads/$(touch x)\r\n",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		updates, err := ParseUpdates(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, u := range updates {
			if !isObjectID(u.Old) || !isObjectID(u.New) || u.Ref == "" || strings.ContainsAny(u.Ref, " \t\n\r") {
				t.Fatalf("ParseUpdates(%q) returned %+v", in, u)
			}
		}
	})
}
