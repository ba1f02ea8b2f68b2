package follow

import (
	"errors"
	"fmt"
	"time"

	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/source"
	"github.com/coder-slots/coder-slots/agent/state"
)

// States of a following slot (Status.State).
const (
	StateFollowing = "following" // up to date, or about to check
	StateDeploying = "deploying" // a follow deploy runs
	StateWaiting   = "waiting"   // for another deploy, or for a new commit after a failed one
	StateBackoff   = "backoff"   // the last checks failed: waiting longer
	StatePaused    = "paused"    // the user took control, or the branch is gone
)

// Status is what a slot's following looks like (API and CLI; the
// repository's token is masked).
type Status struct {
	On              bool   `json:"on"`
	Repo            string `json:"repo,omitempty"`
	Branch          string `json:"branch,omitempty"`
	Interval        string `json:"interval,omitempty"`
	Preview         bool   `json:"preview,omitempty"`
	ReleaseOnDelete bool   `json:"release_on_delete,omitempty"`
	// State is one of the State constants, Message says it in a sentence.
	State   string `json:"state,omitempty"`
	Message string `json:"message,omitempty"`
	// Tip is the branch's commit at the last check that reached the forge.
	Tip          string    `json:"tip,omitempty"`
	FailedCommit string    `json:"failed_commit,omitempty"`
	LastCheck    time.Time `json:"last_check,omitzero"`
	NextCheck    time.Time `json:"next_check,omitzero"`
	// Failures counts the checks in a row that could not reach the forge.
	Failures int `json:"failures,omitempty"`
}

// Status returns the slot's following.
func (f *Follower) Status(name string) Status {
	fw := f.store.Slot(name).Follow
	if fw == nil {
		return Status{}
	}
	st := Status{State: StateFollowing, Message: "checking " + branchName(fw.Branch)}
	f.mu.Lock()
	if l := f.loops[name]; l != nil && l.status.State != "" {
		st = l.status
	}
	f.mu.Unlock()
	st.On, st.Repo, st.Branch, st.Interval = true, source.Redact(fw.Repo), fw.Branch, fw.Interval.String()
	st.Preview, st.ReleaseOnDelete, st.FailedCommit = fw.Preview, fw.ReleaseOnDelete, fw.FailedCommit
	if fw.Paused != "" {
		st.State, st.Message, st.NextCheck = StatePaused, fw.Paused, time.Time{}
	}
	return st
}

// note records what the last check found.
func (f *Follower) note(l *loop, state, msg string, next time.Duration, change func(*Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l.status.State, l.status.Message = state, msg
	l.status.NextCheck = time.Time{}
	if next > 0 {
		l.status.NextCheck = time.Now().Add(next).UTC()
	}
	l.status.Failures = l.failures
	if change != nil {
		change(&l.status)
	}
}

func branchName(b string) string {
	if b == "" {
		return "the default branch"
	}
	return "branch " + b
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// servingCommit is the commit the slot serves ("" for none).
func servingCommit(ss state.Slot) string {
	if ss.Desired != state.DesiredRunning {
		return ""
	}
	cur, _ := ss.Find(ss.Current)
	return cur.Commit
}

// tookControl says why following must pause when the user deployed,
// rolled back or pushed into the slot since following began ("" when not).
func (f *Follower) tookControl(name string, fw state.Follow) string {
	for _, r := range f.d.List(name) {
		if r.CreatedAt.Before(fw.Since) {
			break
		}
		switch r.Trigger {
		case deploy.TriggerDeploy, deploy.TriggerRollback, deploy.TriggerGitPush:
			return fmt.Sprintf("paused: %s %s took control of the slot (resume with slotagent follow %s)", r.Trigger, r.ID, name)
		}
	}
	return ""
}

// allow is checked with the slot held, just before a follow deploy: the
// following it was decided for still holds.
func (f *Follower) allow(name string, fw state.Follow) func(state.Slot) error {
	return func(ss state.Slot) error {
		cur := ss.Follow
		if cur == nil || cur.Paused != "" || cur.Repo != fw.Repo || cur.Branch != fw.Branch {
			return errors.New("following was turned off, paused or changed meanwhile")
		}
		if why := f.tookControl(name, *cur); why != "" {
			return errors.New(why)
		}
		return nil
	}
}

// heads lists repo's branches, sharing the ls-remote in flight for the
// same repository, if any.
func (f *Follower) heads(repo string) (map[string]string, string, error) {
	f.mu.Lock()
	fl := f.flights[repo]
	if fl == nil {
		fl = &flight{done: make(chan struct{})}
		f.flights[repo] = fl
		f.mu.Unlock()
		f.requests.Add(1)
		fl.heads, fl.head, fl.err = source.Heads(f.ctx, f.cfg.Env, repo)
		f.mu.Lock()
		delete(f.flights, repo)
		f.mu.Unlock()
		close(fl.done)
	} else {
		f.mu.Unlock()
		select {
		case <-fl.done:
		case <-f.ctx.Done():
			return nil, "", f.ctx.Err()
		}
	}
	return fl.heads, fl.head, fl.err
}

// check is one check of the slot's branch; it returns the time until the
// next one.
func (f *Follower) check(name string, l *loop) time.Duration {
	fw := f.store.Slot(name).Follow
	if fw == nil {
		return MaxInterval
	}
	if fw.Paused != "" {
		return fw.Interval
	}
	if why := f.tookControl(name, *fw); why != "" {
		f.Pause(name, why)
		return fw.Interval
	}
	heads, head, err := f.heads(fw.Repo)
	if f.ctx.Err() != nil {
		return 0
	}
	now := time.Now().UTC()
	tip, listed := head, head != ""
	if fw.Branch != "" {
		tip, listed = heads[fw.Branch]
	}
	if err == nil && !listed && fw.Branch == "" {
		err = errors.New(source.Redact(fw.Repo) + " has no default branch (is it empty?)")
	}
	if err != nil {
		return f.failed(name, l, fw, err)
	}
	f.mu.Lock()
	l.failures = 0
	l.status.LastCheck, l.status.Tip = now, tip
	f.mu.Unlock()
	if !listed {
		f.branchGone(name, fw)
		return fw.Interval
	}
	next := jitter(fw.Interval)
	switch tip {
	case servingCommit(f.store.Slot(name)):
		f.note(l, StateFollowing, fmt.Sprintf("serving %s, the tip of %s", short(tip), branchName(fw.Branch)), next, nil)
		return next
	case fw.FailedCommit:
		f.note(l, StateWaiting, "waiting for a new commit after a failed deploy of "+short(tip), next, nil)
		return next
	}
	rec, err := f.d.Follow(name, deploy.Request{Repo: fw.Repo, Ref: fw.Branch}, f.allow(name, *fw))
	var busy deploy.ErrBusy
	switch {
	case errors.As(err, &busy):
		f.note(l, StateWaiting, "waiting for "+busy.Running+" to finish before deploying "+short(tip), 0, nil)
		f.waitFree(name)
		return 0
	case errors.Is(err, deploy.ErrInvalid):
		f.cfg.Log.Info("follow deploy refused", "slot", name, "err", err)
		return fw.Interval
	case err != nil:
		return f.failed(name, l, fw, err)
	}
	f.cfg.Log.Info("following: deploying a new commit", "slot", name, "branch", fw.Branch, "commit", tip, "deploy", rec.ID)
	f.note(l, StateDeploying, fmt.Sprintf("deploying %s (%s)", short(tip), rec.ID), 0, nil)
	f.waitFree(name)
	final, _ := f.d.Get(rec.ID)
	switch {
	case final.Status == deploy.Succeeded:
		return 0 // a newer tip that came meanwhile deploys now
	case final.Status == deploy.Failed && final.Commit != "":
		if err := f.store.UpdateSlot(name, func(ss *state.Slot) {
			if ss.Follow != nil {
				ss.Follow.FailedCommit = final.Commit
			}
		}); err != nil {
			f.cfg.Log.Error("save failed follow commit", "slot", name, "err", err)
		}
		return 0
	case final.Status == deploy.Failed:
		return f.failed(name, l, fw, errors.New(final.Error))
	}
	return next
}

// waitFree waits until nothing holds the slot, or the follower closes.
func (f *Follower) waitFree(name string) {
	select {
	case <-f.d.Free(name):
	case <-f.ctx.Done():
	}
}

// failed records a check that could not reach the forge (or a follow
// deploy that could not fetch) and returns the backoff.
func (f *Follower) failed(name string, l *loop, fw *state.Follow, err error) time.Duration {
	f.mu.Lock()
	l.failures++
	n := l.failures
	f.mu.Unlock()
	wait := backoff(fw.Interval, n)
	f.cfg.Log.Warn("following: check failed", "slot", name, "failures", n, "next", wait, "err", err)
	f.note(l, StateBackoff, fmt.Sprintf("cannot check %s: %v (%d failed in a row; next try in %s)", branchName(fw.Branch), err, n, wait.Round(time.Second)), wait,
		func(s *Status) { s.LastCheck = time.Now().UTC() })
	return wait
}

// branchGone stops following a branch that the repository no longer
// lists, and with ReleaseOnDelete returns the slot to its placeholder.
func (f *Follower) branchGone(name string, fw *state.Follow) {
	why := fmt.Sprintf("stopped: branch %s was deleted upstream (%s no longer lists it)", fw.Branch, source.Redact(fw.Repo))
	f.Pause(name, why)
	f.cfg.Log.Warn("following: the branch is gone", "slot", name, "branch", fw.Branch)
	if !fw.ReleaseOnDelete || f.cfg.Stop == nil {
		return
	}
	if err := f.cfg.Stop(name); err != nil {
		f.cfg.Log.Error("following: cannot release the slot of a deleted branch", "slot", name, "err", err)
		return
	}
	if err := f.Off(name); err != nil {
		f.cfg.Log.Error("save follow settings", "slot", name, "err", err)
	}
	f.cfg.Log.Info("following: the slot of a deleted branch is free again", "slot", name)
}
