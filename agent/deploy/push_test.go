package deploy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/slot"
	"github.com/coder-slots/coder-slots/agent/source"
	"github.com/coder-slots/coder-slots/agent/state"
)

func TestPushCheckKeepsTheQuarantineInsideTheRepository(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	repo := GitRepo(data, "a")
	q := filepath.Join(repo, "objects", "tmp_objdir-incoming-abc")
	other := filepath.Join(root, "elsewhere")
	// Another slot's quarantine: what an unclean path could lead to.
	otherSlot := filepath.Join(GitRepo(data, "b"), "objects", "x")
	for _, d := range []string{q, other, otherSlot, filepath.Join(repo, "objects", "pack")} {
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
	const zero = "0000000000000000000000000000000000000000"
	ok := []struct{ repo, quarantine, want string }{
		{repo, q, q},
		// Unclean spellings (built by hand: filepath.Join would clean them).
		{repo, repo + "/./objects/tmp_objdir-incoming-abc", q},
		{repo, repo + "/objects//tmp_objdir-incoming-abc/", q},
		{GitRepo(link, "a"), q, q},
		{repo, "", ""},
	}
	for _, c := range ok {
		got, err := Push{Branch: "main", Old: zero, Commit: sha, Quarantine: c.quarantine}.check(c.repo)
		if err != nil || got != c.want {
			t.Errorf("%s in %s: %q, %v", c.quarantine, c.repo, got, err)
		}
	}
	bad := []struct {
		p    Push
		want string
	}{
		{Push{Branch: "main", Old: zero, Commit: sha, Quarantine: other}, "is not a folder of the slot's repository"},
		{Push{Branch: "main", Old: zero, Commit: sha, Quarantine: repo + "/objects/../../b.git/objects/x"}, "is not a folder"},
		{Push{Branch: "main", Old: zero, Commit: sha, Quarantine: q + "/../../../b.git/objects/x"}, "is not a folder"},
		{Push{Branch: "main", Old: zero, Commit: sha, Quarantine: "objects/tmp_objdir-incoming-abc"}, "is not a folder"},
		{Push{Branch: "main", Old: zero, Commit: sha, Quarantine: filepath.Join(repo, "objects", "tmp_objdir-incoming-gone")}, "does not exist"},
		{Push{Branch: "main", Old: zero, Commit: sha, Quarantine: repo}, "is not a folder"},
		{Push{Branch: "main", Old: zero, Commit: "HEAD", Quarantine: q}, "not a full commit id"},
		{Push{Branch: "-x", Old: zero, Commit: sha, Quarantine: q}, "invalid branch name"},
		{Push{Old: zero, Commit: sha, Quarantine: q}, "invalid branch name"},
		// The API applies the push rules itself (issue 25).
		{Push{Branch: "main", Old: sha, Commit: zero, Quarantine: q}, "deleting a branch is refused"},
		{Push{Branch: "main", Old: "--all", Commit: sha, Quarantine: q}, "is not a full commit id"},
		{Push{Branch: "main", Commit: sha, Quarantine: q}, "is not a full commit id"},
		{Push{Branch: "main\ndeploy succeeded", Old: zero, Commit: sha, Quarantine: q}, "invalid branch name"},
		{Push{Branch: "FETCH_HEAD", Old: zero, Commit: sha, Quarantine: q}, "invalid branch name"},
		{Push{Branch: "refs/heads/main", Old: zero, Commit: sha, Quarantine: q}, "invalid branch name"},
	}
	for _, c := range bad {
		if _, err := c.p.check(repo); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.p, err, c.want)
		}
	}
}

// git runs git in dir and returns its output.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
	out, err := reaper.Output(context.Background(), cmd)
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

func TestPushCheckRefAgainstTheBranchNow(t *testing.T) {
	work := t.TempDir()
	git(t, work, "init", "-q", "-b", "main")
	commit := func(msg string) string {
		git(t, work, "commit", "-q", "--allow-empty", "-m", msg)
		return git(t, work, "rev-parse", "HEAD")
	}
	a := commit("a")
	b := commit("b")
	git(t, work, "checkout", "-q", "-b", "side", a)
	c := commit("c")
	repo := filepath.Join(t.TempDir(), "r.git")
	git(t, work, "clone", "-q", "--bare", work, repo)
	git(t, work, "--git-dir="+repo, "update-ref", "refs/heads/main", b)
	g := &source.Git{CacheDir: repo}
	const zero = "0000000000000000000000000000000000000000"
	cases := []struct {
		p    Push
		want string
	}{
		{Push{Branch: "main", Old: b, Commit: b}, ""},
		{Push{Branch: "new", Old: zero, Commit: c}, ""},
		// The race of issue 25: pushes A→B and A→C from the same base,
		// C checked once main is at B.
		{Push{Branch: "main", Old: a, Commit: c}, "branch main moved to " + b[:7] + " since this push began (it expected " + a[:7] + ")"},
		{Push{Branch: "main", Old: zero, Commit: c}, "branch main was created meanwhile, at " + b[:7]},
		{Push{Branch: "gone", Old: a, Commit: c}, "branch gone does not exist in the slot's repository any more"},
		{Push{Branch: "side", Old: c, Commit: b}, "force-push refused: " + b[:7] + " does not contain " + c[:7]},
		{Push{Branch: "main", Old: b, Commit: strings.Repeat("ab", 20)}, "commit abababa is not in the slot's repository"},
	}
	for _, tc := range cases {
		err := tc.p.checkRef(context.Background(), g)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.p, err, tc.want)
		}
	}
}

// An agent killed between the prepared switch and git's commit leaves a
// pending push; the next deployer lets the branch decide (both ways).
func TestNewSettlesAPushADeadAgentLeftPending(t *testing.T) {
	for _, moved := range []bool{true, false} {
		t.Run(map[bool]string{true: "branch moved", false: "branch stayed"}[moved], func(t *testing.T) {
			data := t.TempDir()
			work := t.TempDir()
			git(t, work, "init", "-q", "-b", "main")
			git(t, work, "commit", "-q", "--allow-empty", "-m", "one")
			c1 := git(t, work, "rev-parse", "HEAD")
			git(t, work, "commit", "-q", "--allow-empty", "-m", "two")
			c2 := git(t, work, "rev-parse", "HEAD")
			repo := GitRepo(data, "a")
			git(t, work, "clone", "-q", "--bare", work, repo)
			git(t, work, "--git-dir="+repo, "symbolic-ref", "HEAD", "refs/heads/other")
			if !moved {
				git(t, work, "--git-dir="+repo, "update-ref", "refs/heads/main", c1)
			}
			var rels []state.Release
			for i, c := range []string{c1, c2} {
				id := "r" + strconv.Itoa(i+1)
				dir := filepath.Join(data, "slots", "a", "releases", id)
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				rels = append(rels, state.Release{ID: id, Dir: dir, Commit: c, Env: map[string]string{"V": id}})
			}
			recs, err := loadRecords(filepath.Join(data, "deploys"), 10)
			if err != nil {
				t.Fatal(err)
			}
			const id = "a-20260101T000000000-push"
			if err := recs.add(&Record{ID: id, Slot: "a", Trigger: TriggerGitPush, Ref: "main", Commit: c2, Release: "r2", Status: Running}); err != nil {
				t.Fatal(err)
			}
			st := state.New()
			st.Slots["a"] = &state.Slot{Desired: state.DesiredRunning, Current: "r2", Env: rels[1].Env, Releases: rels,
				Push: &state.PendingPush{Deploy: id, Release: "r2", Branch: "main", Commit: c2, Desired: state.DesiredRunning, Current: "r1", Env: rels[0].Env}}
			store := &fileStore{path: filepath.Join(data, "state.json"), st: st}
			if err := state.Save(store.path, st); err != nil {
				t.Fatal(err)
			}
			d, err := New(DefaultConfig(data), func(string) *slot.Slot { return nil }, store, []string{"a"}, true, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close(time.Second)
			saved, err := state.Load(store.path)
			if err != nil {
				t.Fatal(err)
			}
			ss := saved.Slots["a"]
			rec, _ := d.Get(id)
			_, r2err := os.Stat(rels[1].Dir)
			if moved {
				if ss.Push != nil || ss.Current != "r2" || ss.Env["V"] != "r2" || len(ss.Releases) != 2 || r2err != nil {
					t.Fatalf("state %+v, release folder: %v", ss, r2err)
				}
				if head := git(t, work, "--git-dir="+repo, "symbolic-ref", "HEAD"); head != "refs/heads/main" {
					t.Fatalf("HEAD is %s: the slot does not track the pushed branch", head)
				}
				if rec.Status != Succeeded || rec.Error != "" || rec.Release != "r2" {
					t.Fatalf("record %+v", rec)
				}
				return
			}
			if ss.Push != nil || ss.Current != "r1" || ss.Env["V"] != "r1" || len(ss.Releases) != 1 || !errors.Is(r2err, os.ErrNotExist) {
				t.Fatalf("state %+v, release folder: %v", ss, r2err)
			}
			want := "the agent stopped before git moved branch main to " + c2[:7] + ", and the branch is at " + c1[:7]
			if rec.Status != Failed || !strings.Contains(rec.Error, want) || rec.Release != "" {
				t.Fatalf("record %+v, want the error %q", rec, want)
			}
		})
	}
}
