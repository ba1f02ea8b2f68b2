package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/coder-slots/coder-slots/agent/source"
	"github.com/coder-slots/coder-slots/agent/state"
)

// GitRepo is the bare repository that `git push` deploys slot from:
// <dataDir>/git/<slot>.git (see agent/gitpush).
func GitRepo(dataDir, slot string) string {
	return filepath.Join(dataDir, "git", slot+".git")
}

// Push is a commit pushed to a slot's git repository (GitRepo), deployed
// while git still holds the push: before the branch moves, the pushed
// objects are only in the push's quarantine directory, so the release is
// checked out from there.
type Push struct {
	// Branch is the pushed branch (without refs/heads/).
	Branch string `json:"branch"`
	// Commit is the pushed commit's full id.
	Commit string `json:"commit"`
	// Quarantine is the push's object directory (GIT_QUARANTINE_PATH of
	// the pre-receive hook), a folder directly in the repository's
	// objects folder; empty when git received the objects in place.
	Quarantine string `json:"quarantine,omitempty"`
}

// pushSource is where a pushed release's code comes from.
type pushSource struct {
	repo, quarantine, commit string
}

// check validates p for slot's repository repo and returns the
// quarantine as an absolute, clean path.
func (p Push) check(repo string) (string, error) {
	if !isHex(p.Commit) {
		return "", invalid("pushed commit %q is not a full commit id", p.Commit)
	}
	if p.Branch == "" || strings.HasPrefix(p.Branch, "-") {
		return "", invalid("pushed branch %q is not valid", p.Branch)
	}
	if p.Quarantine == "" {
		return "", nil
	}
	q := filepath.Clean(p.Quarantine)
	objects := filepath.Join(repo, "objects")
	if !filepath.IsAbs(q) || !sameDir(filepath.Dir(q), objects) {
		return "", invalid("quarantine %q is not a folder of the slot's repository %s", p.Quarantine, objects)
	}
	if st, err := os.Lstat(q); err != nil || !st.IsDir() {
		return "", invalid("quarantine %q does not exist (did the push end?)", p.Quarantine)
	}
	return q, nil
}

// sameDir reports whether a and b are the same folder, whatever symlinks
// lead to them (git gives the hook the physical path of the repository,
// the agent may know it through a symlink such as a linked home).
func sameDir(a, b string) bool {
	if a == b {
		return true
	}
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && ra == rb
}

// isHex reports whether s is a full SHA-1 or SHA-256 object id.
func isHex(s string) bool {
	return (len(s) == 40 || len(s) == 64) && strings.Trim(strings.ToLower(s), "0123456789abcdef") == ""
}

// Push starts deploying a pushed commit into the slot, with trigger
// git-push; the caller (the repository's pre-receive hook) follows the
// deploy and lets git move the branch only when it succeeds. A refused
// push (ErrInvalid, ErrBusy) changes nothing.
func (d *Deployer) Push(name string, p Push) (Record, error) {
	if d.slots(name) == nil {
		return Record{}, invalid("unknown slot %q", name)
	}
	repo := GitRepo(d.cfg.DataDir, name)
	q, err := p.check(repo)
	if err != nil {
		return Record{}, err
	}
	ps := &pushSource{repo: repo, quarantine: q, commit: strings.ToLower(p.Commit)}
	var slotEnv map[string]string
	j, err := d.begin(name, TriggerGitPush, func(ss state.Slot, r *Record) (bool, error) {
		r.Repo, r.Ref, r.Commit = repo, p.Branch, ps.commit
		slotEnv = ss.Env
		return true, nil
	})
	if err != nil {
		return Record{}, err
	}
	j.sink.SetSecrets(j.slot.Secrets(slotEnv))
	rec := *j.rec
	j.run(func(ctx context.Context) error {
		return j.build(ctx, Request{Repo: repo, Ref: p.Branch, push: ps})
	})
	return rec, nil
}

// checkoutPushed writes the pushed commit's files into work, reading the
// push's quarantine.
func (j *job) checkoutPushed(ctx context.Context, ps *pushSource, work string) error {
	j.logf("pushed branch %s at %s", j.rec.Ref, ps.commit)
	g := &source.Git{CacheDir: ps.repo, Env: j.d.cfg.Env, Log: j.out, Quarantine: ps.quarantine}
	if err := g.Checkout(ctx, ps.commit, work); err != nil {
		return fmt.Errorf("pushed commit: %w", err)
	}
	return nil
}
