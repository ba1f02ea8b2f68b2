package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/coder-slots/coder-slots/agent/slot"
	"github.com/coder-slots/coder-slots/agent/source"
	"github.com/coder-slots/coder-slots/agent/state"
)

// A push's release is built and health-checked while git holds the push
// (in its pre-receive hook), and switched to only as git moves the branch:
// git may still refuse the update once pre-receive accepted it (the
// branch moved meanwhile, a ref in the way such as main for main/x), and
// a push that git does not accept must change nothing that serves.
//
// So once the candidate is healthy, the deploy waits for git (see
// RefUpdate, which the repository's reference-transaction hook calls):
// "prepared" comes with the branch locked and checked by git, the old
// value included; the deploy switches the slot then, so a failed switch
// still aborts the update. "committed" says the branch moved: the deploy
// drains the previous app and ends. Whatever else happens — "aborted",
// receive-pack gone without a word, gitWait passed, the agent stopping —
// the branch's value in the repository decides: the pushed commit serves
// when (and only when) the branch points at it.
//
// The switch at "prepared" is saved with a state.PendingPush (what served
// before it), made final once the branch is seen moved. An agent killed in
// between never hears how git ended (and its death makes the hook fail,
// so git aborts a transaction it had not committed yet): the next agent
// settles the pending push before it brings any app back, with the same
// rule, the branch's value (see settlePushes).

// gitWait bounds how long a healthy candidate waits for git to update the
// branch once pre-receive has accepted (git migrates the objects and
// locks the ref: seconds).
const gitWait = 2 * time.Minute

// The states of git's reference-transaction hook.
const (
	RefPrepared  = "prepared"
	RefCommitted = "committed"
	RefAborted   = "aborted"
)

// RefChange is one line of the reference-transaction hook's input.
type RefChange struct {
	Old string `json:"old"`
	New string `json:"new"`
	Ref string `json:"ref"`
}

// RefEvent is one run of a slot repository's reference-transaction hook.
type RefEvent struct {
	// State is prepared, committed or aborted.
	State string `json:"state"`
	// Receiver is the pid of the git process whose transaction it is
	// (the hook's parent: receive-pack, for a push).
	Receiver int `json:"receiver"`
	// Changes are the refs the transaction updates.
	Changes []RefChange `json:"changes"`
}

// pendingPush is a push's deploy, from its start to its end, as the
// reference-transaction hook finds it.
type pendingPush struct {
	id, ref, commit string
	receiver        int
	// ready is closed once the candidate is healthy and waits for git.
	ready chan struct{}
	// gone is closed once receive-pack has exited.
	gone <-chan struct{}
	// calls carries the hook's reports to the deploy.
	calls chan refCall
	// done is closed when the deploy no longer takes calls.
	done chan struct{}
}

// refCall is a report of the hook, answered on reply.
type refCall struct {
	state string
	reply chan refReply
}

type refReply struct {
	msg string
	err error
}

// watchExit returns a channel closed once the process behind pidfd has
// exited (or ctx ended); it closes pidfd then.
func watchExit(ctx context.Context, pidfd int) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		defer unix.Close(pidfd)
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for ctx.Err() == nil {
			n, err := unix.Poll(fds, 200)
			if n > 0 || err != nil && !errors.Is(err, unix.EINTR) {
				return
			}
		}
	}()
	return ch
}

// PushWaiting returns a channel closed once the push deploy id is healthy
// and waits for git to move its branch (the pre-receive hook then lets
// git go on); nil when id is not a push's deploy under way.
func (d *Deployer) PushWaiting(id string) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.pushes {
		if p.id == id {
			return p.ready
		}
	}
	return nil
}

// RefUpdate hands a slot repository's reference-transaction report to the
// push deploy it belongs to (same receive-pack, the deployed branch and
// commit) and returns what the pusher should read; an error makes the
// hook refuse ("prepared": git aborts the update). A transaction that is
// no push's deploy (git gc packing refs, the agent's own) is not the
// deploys' business: "", nil.
func (d *Deployer) RefUpdate(name string, ev RefEvent) (string, error) {
	switch ev.State {
	case RefPrepared, RefCommitted, RefAborted:
	default:
		return "", invalid("unknown reference-transaction state %q", ev.State)
	}
	d.mu.Lock()
	p := d.pushes[name]
	d.mu.Unlock()
	if p == nil || p.receiver != ev.Receiver || !p.changedBy(ev) {
		return "", nil
	}
	reply := make(chan refReply, 1)
	select {
	case p.calls <- refCall{state: ev.State, reply: reply}:
	case <-p.done:
		return "", errors.New("the push's deploy has ended")
	}
	r := <-reply
	return r.msg, r.err
}

// changedBy reports whether ev moves p's branch to p's commit.
func (p *pendingPush) changedBy(ev RefEvent) bool {
	for _, c := range ev.Changes {
		if c.Ref == p.ref && c.New == p.commit {
			return true
		}
	}
	return false
}

// awaitGit is the end of a push's deploy: cand, healthy, is switched to
// as git moves the branch, or discarded when git does not (see the top of
// this file). promoted tells whether rel serves and is saved.
func (j *job) awaitGit(ctx context.Context, rel state.Release, cand *slot.Candidate, ps *pushSource) (promoted bool, err error) {
	p, branch := ps.pending, j.rec.Ref
	before := j.d.store.Slot(j.rec.Slot)
	j.logf("==> waiting for git: the app answers; slot %s switches to it as git moves branch %s", j.rec.Slot, branch)
	close(p.ready)
	var sw *switched
	var last *refCall
	timer := time.NewTimer(gitWait)
	defer timer.Stop()
wait:
	for {
		select {
		case call := <-p.calls:
			if call.state != RefPrepared {
				last = &call
				break wait
			}
			if sw == nil {
				pending := &state.PendingPush{Deploy: j.rec.ID, Release: rel.ID, Branch: branch, Commit: ps.commit}
				if sw, err = j.switchTo(ctx, rel, cand, true, pending); err != nil {
					call.reply <- refReply{err: fmt.Errorf("slot %s could not switch to %s: %w", j.rec.Slot, shortCommit(ps.commit), err)}
					return false, err
				}
				sw.before = before
			}
			call.reply <- refReply{}
		case <-p.gone:
			break wait
		case <-timer.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	answer := func(msg string, err error) {
		if last != nil {
			last.reply <- refReply{msg: msg, err: err}
		}
	}
	// The branch's value in the repository decides.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	g := &source.Git{CacheDir: ps.repo, Env: j.d.cfg.Env}
	cur, rerr := g.Branch(rctx, branch)
	if rerr == nil && cur == ps.commit {
		if sw == nil {
			if sw, err = j.switchTo(rctx, rel, cand, true, nil); err != nil {
				answer("", err)
				return false, fmt.Errorf("git moved branch %s, but slot %s could not switch to it: %w", branch, j.rec.Slot, err)
			}
			sw.before = before
		}
		msg := fmt.Sprintf("slot %s serves %s (release %s)", j.rec.Slot, shortCommit(ps.commit), rel.ID)
		if prev, err := g.SetHead(rctx, branch); err != nil {
			msg += fmt.Sprintf("; tracking branch %s failed: %v", branch, err)
		} else if prev != branch {
			msg += fmt.Sprintf("; it now tracks branch %s (was %s)", branch, prev)
		}
		if err := sw.confirm(); err != nil {
			// The state still says pending: the next start settles it.
			j.logf("saving the switch as final failed: %v", err)
		}
		j.logf("%s", msg)
		sw.finish(ctx)
		answer(msg, nil)
		return true, nil
	}
	if sw != nil {
		if err := sw.undo(); err != nil {
			j.logf("saving the slot's state back failed: %v", err)
		}
	} else {
		j.slot.Discard(cand, candidateGrace)
	}
	answer("", nil)
	if rerr != nil {
		return false, fmt.Errorf("git's update of branch %s cannot be read (%v): the slot keeps serving what it served", branch, rerr)
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return false, fmt.Errorf("git did not move branch %s to %s (it refused the update, or the push was cut off): the slot keeps serving what it served", branch, shortCommit(ps.commit))
}

// settlePushes ends the pushes that a dead agent left pending (see
// state.PendingPush) by the rule a live push ends with: the pushed release
// stays when the branch points at its commit, and otherwise what served
// before serves again and the release is forgotten (its folder, no longer
// known, goes with the strays). Its deploy record says how it ended.
func (d *Deployer) settlePushes(names []string) {
	for _, name := range names {
		if p := d.store.Slot(name).Push; p != nil {
			d.settlePush(name, *p)
		}
	}
}

// settlePush settles slot name's pending push p (see settlePushes).
func (d *Deployer) settlePush(name string, p state.PendingPush) {
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	g := &source.Git{CacheDir: GitRepo(d.cfg.DataDir, name), Env: d.cfg.Env}
	cur, rerr := g.Branch(ctx, p.Branch)
	moved := rerr == nil && cur == p.Commit
	err := d.store.UpdateSlot(name, func(ss *state.Slot) {
		ss.Push = nil
		if !moved {
			ss.Desired, ss.Current, ss.Env = p.Desired, p.Current, p.Env
			ss.Releases = slices.DeleteFunc(ss.Releases, func(r state.Release) bool { return r.ID == p.Release })
		}
		ss.Releases, _ = d.prune(ss.Releases, ss.Current) // the folders go with the strays
	})
	if err != nil {
		d.log.Error("cannot settle the push an earlier agent left pending", "slot", name, "deploy", p.Deploy, "err", err)
		return
	}
	status, why := Succeeded, ""
	if moved {
		if _, err := g.SetHead(ctx, p.Branch); err != nil {
			d.log.Warn("cannot track the pushed branch", "slot", name, "branch", p.Branch, "err", err)
		}
		d.log.Warn("a push an earlier agent left pending: git moved the branch, its release serves", "slot", name, "deploy", p.Deploy, "release", p.Release)
	} else {
		status = Failed
		at := "is at " + shortCommit(cur)
		switch {
		case rerr != nil:
			at = "cannot be read (" + rerr.Error() + ")"
		case cur == "":
			at = "does not exist"
		}
		why = fmt.Sprintf("the agent stopped before git moved branch %s to %s, and the branch %s: the slot serves what it served", p.Branch, shortCommit(p.Commit), at)
		d.log.Warn("a push an earlier agent left pending: git did not move the branch, the release before it serves", "slot", name, "deploy", p.Deploy, "release", p.Release, "reason", why)
	}
	err = d.records.updateID(p.Deploy, func(r *Record) {
		r.Status, r.Error = status, why
		if !moved {
			r.Release = ""
		}
	})
	if err != nil {
		d.log.Warn("cannot update a push's deploy record", "deploy", p.Deploy, "err", err)
	}
}
