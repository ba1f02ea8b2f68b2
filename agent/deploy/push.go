package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

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
	// Old is the commit the push expects the branch at: git's old value,
	// the null id (all zeros) when the push creates the branch.
	Old string `json:"old"`
	// Commit is the pushed commit's full id.
	Commit string `json:"commit"`
	// Quarantine is the push's object directory (GIT_QUARANTINE_PATH of
	// the pre-receive hook), a folder directly in the repository's
	// objects folder; empty when git received the objects in place.
	Quarantine string `json:"quarantine,omitempty"`
	// Receiver is the pid of the push's git receive-pack (the hook's
	// parent): the deploy switches the slot only as it moves the branch,
	// and gives up when it exits without doing so (see RefUpdate).
	Receiver int `json:"receiver"`
}

// pushSource is where a pushed release's code comes from, and how the
// deploy meets git again.
type pushSource struct {
	repo, quarantine, commit string
	pending                  *pendingPush
}

// check validates p for slot's repository repo and returns the
// quarantine as an absolute, clean path. (What needs the repository's
// refs is checked by checkRef, under the slot's reservation.)
func (p Push) check(repo string) (string, error) {
	if !isHex(p.Commit) || isNull(p.Commit) {
		return "", invalid("pushed commit %q is not a full commit id (deleting a branch is refused)", p.Commit)
	}
	if !isHex(p.Old) {
		return "", invalid("old value %q of the pushed branch is not a full commit id (all zeros for a new branch)", p.Old)
	}
	if err := source.ValidateBranch(p.Branch); err != nil {
		return "", invalid("%v", err)
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

// isNull reports whether the object id s is git's null id.
func isNull(s string) bool { return strings.Trim(s, "0") == "" }

// checkRef applies the push rules that need the repository, against the
// branch's value now (the caller holds the slot, so no other push moves
// it meanwhile): the branch is still where the push expects it, and the
// push keeps every commit it had (a fast-forward).
func (p Push) checkRef(ctx context.Context, g *source.Git) error {
	switch ok, err := g.HasCommit(ctx, strings.ToLower(p.Commit)); {
	case err != nil:
		return err
	case !ok:
		return invalid("commit %s is not in the slot's repository nor in the push's quarantine", shortCommit(p.Commit))
	}
	cur, err := g.Branch(ctx, p.Branch)
	if err != nil {
		return err
	}
	old := strings.ToLower(p.Old)
	if isNull(old) {
		old = ""
	}
	switch {
	case cur != old && cur == "":
		return invalid("branch %s does not exist in the slot's repository any more (expected at %s)", p.Branch, shortCommit(old))
	case cur != old && old == "":
		return invalid("branch %s was created meanwhile, at %s: fetch it, merge, and push again", p.Branch, shortCommit(cur))
	case cur != old:
		return invalid("branch %s moved to %s since this push began (it expected %s): fetch, merge, and push again", p.Branch, shortCommit(cur), shortCommit(old))
	case cur == "":
		return nil
	}
	ok, err := g.IsAncestor(ctx, cur, strings.ToLower(p.Commit))
	switch {
	case err != nil:
		return fmt.Errorf("check that the push is a fast-forward: %w", err)
	case !ok:
		return invalid("force-push refused: %s does not contain %s, the commit %s points at, so commits would be lost; pull and merge (or rebase) first, or push under a new branch name",
			shortCommit(p.Commit), shortCommit(cur), p.Branch)
	}
	return nil
}

// Push starts deploying a pushed commit into the slot, with trigger
// git-push; the caller (the repository's pre-receive hook) follows the
// deploy until the new release is healthy (PushWaiting), and lets git go
// on; the slot switches to it as git moves the branch (RefUpdate), never
// otherwise. Every push
// rule is applied here, whoever asks (the hook is only the first check):
// a valid branch name, full commit ids, no deletion, the quarantine inside
// the slot's repository, the branch still at p.Old, and a fast-forward. A
// refused push (ErrInvalid, ErrBusy) changes nothing.
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
	pidfd := -1
	j, err := d.begin(name, TriggerGitPush, func(ss state.Slot, r *Record) (bool, error) {
		ctx, cancel := context.WithTimeout(d.ctx, time.Minute)
		defer cancel()
		if err := p.checkRef(ctx, &source.Git{CacheDir: repo, Env: d.cfg.Env, Quarantine: q}); err != nil {
			return false, err
		}
		// The pid is watched through a pidfd opened while the hook, its
		// child, runs: a reused pid is never taken for it.
		var err error
		if p.Receiver <= 1 {
			err = unix.ESRCH
		} else {
			pidfd, err = unix.PidfdOpen(p.Receiver, 0)
		}
		if err != nil {
			return false, invalid("the push's receive-pack (pid %d) cannot be watched: %v", p.Receiver, err)
		}
		r.Repo, r.Ref, r.Commit = repo, p.Branch, ps.commit
		slotEnv = ss.Env
		return true, nil
	})
	if err != nil {
		if pidfd >= 0 {
			_ = unix.Close(pidfd)
		}
		return Record{}, err
	}
	pp := &pendingPush{id: j.rec.ID, ref: "refs/heads/" + p.Branch, commit: ps.commit, receiver: p.Receiver,
		ready: make(chan struct{}), gone: watchExit(d.ctx, pidfd), calls: make(chan refCall), done: make(chan struct{})}
	ps.pending = pp
	d.mu.Lock()
	d.pushes[name] = pp
	d.mu.Unlock()
	j.sink.SetSecrets(j.slot.Secrets(slotEnv))
	rec := *j.rec
	j.run(func(ctx context.Context) error {
		defer func() {
			d.mu.Lock()
			delete(d.pushes, name)
			d.mu.Unlock()
			close(pp.done)
		}()
		return j.build(ctx, Request{Repo: repo, Ref: p.Branch, push: ps})
	})
	return rec, nil
}

// checkoutPushed writes the pushed commit's files into work, reading the
// push's quarantine, and returns the commit's subject (see job.subject).
func (j *job) checkoutPushed(ctx context.Context, ps *pushSource, work string) (subject string, err error) {
	g := &source.Git{CacheDir: ps.repo, Env: j.d.cfg.Env, Log: j.out, Quarantine: ps.quarantine}
	subject = j.subject(ctx, g, ps.commit)
	j.logf("pushed branch %s at %s %s", j.rec.Ref, ps.commit, subject)
	if err := g.Checkout(ctx, ps.commit, work); err != nil {
		return "", fmt.Errorf("pushed commit: %w", err)
	}
	return subject, nil
}
