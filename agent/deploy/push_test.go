package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPushCheckKeepsTheQuarantineInsideTheRepository(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	repo := GitRepo(data, "a")
	q := filepath.Join(repo, "objects", "tmp_objdir-incoming-abc")
	other := filepath.Join(root, "elsewhere")
	for _, d := range []string{q, other, filepath.Join(repo, "objects", "pack")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// The agent may know the data dir through a symlink; git gives the
	// physical path.
	link := filepath.Join(root, "linked")
	if err := os.Symlink(data, link); err != nil {
		t.Fatal(err)
	}
	const sha = "0123456789abcdef0123456789abcdef01234567"
	ok := []struct{ repo, quarantine, want string }{
		{repo, q, q},
		{repo, filepath.Join(repo, ".", "objects", "tmp_objdir-incoming-abc"), q},
		{GitRepo(link, "a"), q, q},
		{repo, "", ""},
	}
	for _, c := range ok {
		got, err := Push{Branch: "main", Commit: sha, Quarantine: c.quarantine}.check(c.repo)
		if err != nil || got != c.want {
			t.Errorf("%s in %s: %q, %v", c.quarantine, c.repo, got, err)
		}
	}
	bad := []struct {
		p    Push
		want string
	}{
		{Push{Branch: "main", Commit: sha, Quarantine: other}, "is not a folder of the slot's repository"},
		{Push{Branch: "main", Commit: sha, Quarantine: filepath.Join(repo, "objects", "..", "..", "b.git", "objects", "x")}, "is not a folder"},
		{Push{Branch: "main", Commit: sha, Quarantine: "objects/tmp_objdir-incoming-abc"}, "is not a folder"},
		{Push{Branch: "main", Commit: sha, Quarantine: filepath.Join(repo, "objects", "tmp_objdir-incoming-gone")}, "does not exist"},
		{Push{Branch: "main", Commit: sha, Quarantine: repo}, "is not a folder"},
		{Push{Branch: "main", Commit: "HEAD", Quarantine: q}, "not a full commit id"},
		{Push{Branch: "-x", Commit: sha, Quarantine: q}, "branch"},
		{Push{Commit: sha, Quarantine: q}, "branch"},
	}
	for _, c := range bad {
		if _, err := c.p.check(repo); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.p, err, c.want)
		}
	}
}
