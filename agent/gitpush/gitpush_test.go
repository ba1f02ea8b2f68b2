package gitpush

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/reaper"
)

const (
	zero = "0000000000000000000000000000000000000000"
	c1   = "1111111111111111111111111111111111111111"
	c2   = "2222222222222222222222222222222222222222"
)

func TestCheckPolicy(t *testing.T) {
	cases := []struct {
		name    string
		updates []Update
		branch  string
		err     string
	}{
		{"new branch", []Update{{zero, c1, "refs/heads/main"}}, "main", ""},
		{"update", []Update{{c1, c2, "refs/heads/feature/x-1.2_b"}}, "feature/x-1.2_b", ""},
		{"nothing", nil, "", "updates no ref"},
		{"two refs", []Update{{zero, c1, "refs/heads/a"}, {zero, c1, "refs/heads/b"}}, "", "push one branch at a time: this push updates 2 refs (refs/heads/a, refs/heads/b)"},
		{"delete", []Update{{c1, zero, "refs/heads/main"}}, "", "use `slotagent stop a`"},
		{"tag", []Update{{zero, c1, "refs/tags/v1"}}, "", "tags are not deployed"},
		{"note", []Update{{zero, c1, "refs/notes/commits"}}, "", "only branches are deployed, not refs/notes/commits"},
		{"dash", []Update{{zero, c1, "refs/heads/-x"}}, "", `invalid branch name "-x"`},
		// Names git would read as another ref (issue 25): git-remote
		// would print a push of something else.
		{"HEAD", []Update{{zero, c1, "refs/heads/HEAD"}}, "", `invalid branch name "HEAD"`},
		{"FETCH_HEAD", []Update{{zero, c1, "refs/heads/FETCH_HEAD"}}, "", `invalid branch name "FETCH_HEAD"`},
		{"refs in refs", []Update{{zero, c1, "refs/heads/refs/heads/main"}}, "", `invalid branch name "refs/heads/main"`},
		{"tags/", []Update{{zero, c1, "refs/heads/tags/v1"}}, "", `invalid branch name "tags/v1"`},
		{"heads/", []Update{{zero, c1, "refs/heads/heads/x"}}, "", `invalid branch name "heads/x"`},
		// What git allows in a branch name is pushed (the printed
		// commands quote it).
		{"shell characters", []Update{{zero, c1, "refs/heads/x$(reboot)"}}, "x$(reboot)", ""},
	}
	for _, c := range cases {
		branch, _, err := Check("a", c.updates)
		switch {
		case c.err == "" && (err != nil || branch != c.branch):
			t.Errorf("%s: got %q, %v; want %q", c.name, branch, err, c.branch)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: got %q, %v; want an error with %q", c.name, branch, err, c.err)
		}
	}
}

func TestParseUpdates(t *testing.T) {
	got, err := ParseUpdates(strings.NewReader(zero + " " + c1 + " refs/heads/main\n\n" + c1 + " " + c2 + " refs/heads/b\n"))
	if err != nil || len(got) != 2 || got[1] != (Update{c1, c2, "refs/heads/b"}) {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range []string{"garbage", "--all " + c1 + " refs/heads/main", zero + " --output=/tmp/x refs/heads/main",
		"HEAD " + c1 + " refs/heads/main", zero + " " + c1[:39] + " refs/heads/main", zero + " " + strings.ToUpper("abcdef"+c1[6:]) + " refs/heads/main",
		zero + " " + c1 + " refs/heads/main extra"} {
		if _, err := ParseUpdates(strings.NewReader(bad + "\n")); err == nil {
			t.Errorf("a malformed line was accepted: %q", bad)
		}
	}
}

func TestLocate(t *testing.T) {
	repo, data, slot, err := Locate("/home/coder/data/slotagent/git/a.git")
	if err != nil || repo != "/home/coder/data/slotagent/git/a.git" || data != "/home/coder/data/slotagent" || slot != "a" {
		t.Fatalf("%q %q %q %v", repo, data, slot, err)
	}
	for _, bad := range []string{"/tmp/x.git", "/data/git/a", "/data/git/.git"} {
		if _, _, _, err := Locate(bad); err == nil {
			t.Errorf("%s was taken for a slot repository", bad)
		}
	}
}

func TestDescribe(t *testing.T) {
	r, err := Describe("/home/coder/data/slotagent/git/b.git", "b", "/home/coder", "dev")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"git remote add slot-b coder.dev:data/slotagent/git/b.git", "git push slot-b main"}
	if r.Path != "data/slotagent/git/b.git" || r.Host != "coder.dev" || r.URL != "coder.dev:data/slotagent/git/b.git" ||
		strings.Join(r.Commands, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%+v", r)
	}
	// Outside the home folder: absolute. Unknown or invalid workspace: no host.
	for _, ws := range []string{"", "bad name", "-x", "a;b"} {
		r, err = Describe("/srv/slots/git/b.git", "b", "/home/coder", ws)
		if err != nil || r.Path != "/srv/slots/git/b.git" || r.Host != "" || r.URL != "/srv/slots/git/b.git" {
			t.Errorf("workspace %q: %+v %v", ws, r, err)
		}
	}
	// A branch name with characters sh reads is quoted in the command.
	repo := filepath.Join(t.TempDir(), "git", "b.git")
	if err := os.MkdirAll(repo, 0o700); err != nil {
		t.Fatal(err)
	}
	writeHead(t, repo, "refs/heads/x$(reboot)")
	if r, err := Describe(repo, "b", "", "dev"); err != nil || r.Commands[1] != "git push slot-b 'x$(reboot)'" {
		t.Errorf("%q %v", r.Commands, err)
	}
	for _, bad := range []string{"/home/coder/my data/git/b.git", "/srv/a'b/git/b.git", "/srv/$(x)/git/b.git"} {
		if _, err := Describe(bad, "b", "/home/coder", "dev"); err == nil || !strings.Contains(err.Error(), "cannot be used as a git remote") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// writeHead points repo's HEAD at ref.
func writeHead(t *testing.T, repo, ref string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(repo, "HEAD"), []byte("ref: "+ref+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func gitOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := reaper.Output(context.Background(), exec.Command("git", args...))
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

func TestEnsureMakesTheRepositoryOnceAndRefreshRepointsTheHook(t *testing.T) {
	data := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Ensure(context.Background(), data, "c", "/usr/local/bin/slotagent")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	repo := filepath.Join(data, "git", "c.git")
	if got := gitOut(t, "--git-dir="+repo, "rev-parse", "--is-bare-repository"); got != "true" {
		t.Fatalf("bare: %s", got)
	}
	for key, want := range map[string]string{"core.hooksPath": "hooks", "receive.denyDeletes": "true", "receive.denyNonFastForwards": "true"} {
		if got := gitOut(t, "--git-dir="+repo, "config", key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if link, err := os.Readlink(filepath.Join(repo, "hooks", "slotagent")); err != nil || link != "/usr/local/bin/slotagent" {
		t.Fatalf("hook's binary: %q %v", link, err)
	}
	if b, err := os.ReadFile(filepath.Join(repo, "hooks", "pre-receive")); err != nil || string(b) != hookScript {
		t.Fatalf("hook: %q %v", b, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(data, "git")); len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
	if trackedBranch(repo) != "main" {
		t.Fatalf("tracked: %s", trackedBranch(repo))
	}

	if err := Refresh(data, []string{"a", "c"}, "/opt/new/slotagent"); err != nil {
		t.Fatal(err)
	}
	if link, _ := os.Readlink(filepath.Join(repo, "hooks", "slotagent")); link != "/opt/new/slotagent" {
		t.Fatalf("hook's binary after refresh: %q", link)
	}
	if _, err := os.Stat(filepath.Join(data, "git", "a.git")); !os.IsNotExist(err) {
		t.Fatal("refresh made a repository")
	}
}

// pushTo pushes a new commit of a fresh work tree to repo as branch and
// returns git's output and whether the push succeeded.
func pushTo(t *testing.T, repo, branch string) (string, bool) {
	t.Helper()
	work := t.TempDir()
	gitOut(t, "-C", work, "init", "-q")
	gitOut(t, "-C", work, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "--allow-empty", "-m", "x")
	cmd := exec.Command("git", "-C", work, "push", repo, "HEAD:refs/heads/"+branch)
	out, err := reaper.Output(context.Background(), cmd)
	var ee *reaper.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if ee != nil {
		out = append(out, ee.Stderr...)
	}
	return string(out), err == nil
}

func TestTheHookFailsClosedWhenTheBinaryIsGone(t *testing.T) {
	data := t.TempDir()
	bin := filepath.Join(t.TempDir(), "slotagent")
	// A stand-in for the binary: it records how the hook ran it.
	args := filepath.Join(t.TempDir(), "args")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"$@\" >> "+args+"\ncat >/dev/null\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	repo, err := Ensure(context.Background(), data, "a", bin)
	if err != nil {
		t.Fatal(err)
	}
	if out, ok := pushTo(t, repo, "main"); !ok {
		t.Fatalf("push through the stand-in refused:\n%s", out)
	}
	if b, _ := os.ReadFile(args); string(b) != "git-hook pre-receive\ngit-hook reference-transaction prepared\ngit-hook reference-transaction committed\n" {
		t.Fatalf("the hook ran the binary with %q", b)
	}

	// The binary moves away (an upgrade, another image): no push lands,
	// whether an agent runs or not.
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	out, ok := pushTo(t, repo, "other")
	if ok || !strings.Contains(out, "slotagent: push refused: this repository's hook cannot run slotagent") {
		t.Fatalf("push with the binary gone:\n%s", out)
	}
	if refs := gitOut(t, "--git-dir="+repo, "for-each-ref", "--format=%(refname)"); refs != "refs/heads/main" {
		t.Fatalf("refs after the refused push: %q", refs)
	}
}

func TestRefreshRemovesWhatAKilledPushLeftBehind(t *testing.T) {
	data := t.TempDir()
	// A stand-in for the binary that kills receive-pack while it holds
	// the push's objects in quarantine.
	bin := filepath.Join(t.TempDir(), "slotagent")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nkill -9 $PPID\nsleep 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	repo, err := Ensure(context.Background(), data, "a", bin)
	if err != nil {
		t.Fatal(err)
	}
	if out, ok := pushTo(t, repo, "main"); ok {
		t.Fatalf("the push went through:\n%s", out)
	}
	left, _ := filepath.Glob(filepath.Join(repo, "objects", "tmp_objdir-incoming-*"))
	if len(left) != 1 {
		t.Fatalf("quarantines after the killed push: %v", left)
	}
	// One being written now (a push uploading) stays.
	live := filepath.Join(repo, "objects", "tmp_objdir-incoming-live")
	if err := os.Mkdir(live, 0o700); err != nil {
		t.Fatal(err)
	}
	// The killed push's is old by the time the agent starts again.
	old := time.Now().Add(-time.Hour)
	_ = filepath.WalkDir(left[0], func(p string, _ fs.DirEntry, _ error) error { return os.Chtimes(p, old, old) })
	if err := Refresh(data, []string{"a", "b"}, bin); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left[0]); !os.IsNotExist(err) {
		t.Fatalf("the killed push's quarantine is still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("a live push's quarantine was removed: %v", err)
	}
}
