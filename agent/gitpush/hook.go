package gitpush

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/source"
)

// Agent is what the hook needs from the running agent (over its control
// socket).
type Agent interface {
	// Push starts the deploy of a pushed commit.
	Push(ctx context.Context, slot string, p deploy.Push) (deploy.Record, error)
	// FollowPush copies a push deploy's log to w until the deploy ends or
	// waits for git.
	FollowPush(ctx context.Context, id string, w io.Writer) error
	// RefUpdate reports a reference-transaction hook's run and returns
	// what the pusher should read.
	RefUpdate(ctx context.Context, slot string, ev deploy.RefEvent) (string, error)
	// Deploy returns a deploy's record.
	Deploy(ctx context.Context, id string) (deploy.Record, error)
}

// Update is one line of pre-receive's input: a ref git is asked to move.
type Update struct {
	Old, New, Ref string
}

// ParseUpdates reads pre-receive's input: "<old> <new> <ref>" lines, the
// ids full hexadecimal object ids (so none can be read as an option by a
// git command given it).
func ParseUpdates(r io.Reader) ([]Update, error) {
	var out []Update
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 || !isObjectID(f[0]) || !isObjectID(f[1]) {
			return nil, fmt.Errorf("unexpected hook input line %q: want <old id> <new id> <ref>", sc.Text())
		}
		out = append(out, Update{Old: f[0], New: f[1], Ref: f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read hook input: %w", err)
	}
	return out, nil
}

// isObjectID reports whether s is a full SHA-1 or SHA-256 object id in
// git's lowercase hexadecimal.
func isObjectID(s string) bool {
	return (len(s) == 40 || len(s) == 64) && strings.Trim(s, "0123456789abcdef") == ""
}

// isZero reports whether id is git's null object id (a ref created or
// deleted).
func isZero(id string) bool { return strings.Trim(id, "0") == "" }

// Check applies the push policy to the updates of one push and returns
// the branch to deploy: one branch per push, not deleted, a name that
// source.ValidateBranch accepts.
// (The agent applies these rules again, and those that need the
// repository: see deploy.Deployer.Push.)
func Check(slot string, updates []Update) (branch string, u Update, err error) {
	switch {
	case len(updates) == 0:
		return "", Update{}, errors.New("nothing to deploy: the push updates no ref")
	case len(updates) > 1:
		refs := make([]string, len(updates))
		for i, u := range updates {
			refs[i] = u.Ref
		}
		return "", Update{}, fmt.Errorf("push one branch at a time: this push updates %d refs (%s); each push deploys one commit", len(updates), strings.Join(refs, ", "))
	}
	u = updates[0]
	name, isBranch := strings.CutPrefix(u.Ref, "refs/heads/")
	switch {
	case strings.HasPrefix(u.Ref, "refs/tags/"):
		return "", u, fmt.Errorf("tags are not deployed: push a branch (git push slot-%s main)", slot)
	case !isBranch:
		return "", u, fmt.Errorf("only branches are deployed, not %s", u.Ref)
	case isZero(u.New):
		return "", u, fmt.Errorf("deleting branch %s is refused: the slot would lose what it deploys; to take the app down, use `slotagent stop %s` in the workspace", name, slot)
	}
	if err := source.ValidateBranch(name); err != nil {
		return "", u, err
	}
	return name, u, nil
}

// Locate finds the absolute path, the slot and the data dir of the
// repository gitDir (<data dir>/git/<slot>.git).
func Locate(gitDir string) (repo, dataDir, slot string, err error) {
	repo, err = filepath.Abs(gitDir)
	if err != nil {
		return "", "", "", fmt.Errorf("find the repository: %w", err)
	}
	slot, ok := strings.CutSuffix(filepath.Base(repo), ".git")
	if !ok || slot == "" || filepath.Base(filepath.Dir(repo)) != "git" {
		return "", "", "", fmt.Errorf("%s is not a slot repository (<data dir>/git/<slot>.git)", repo)
	}
	return repo, filepath.Dir(filepath.Dir(repo)), slot, nil
}

// Hook is one run of the pre-receive hook.
type Hook struct {
	// GitDir is the repository (git runs the hook inside it).
	GitDir string
	// Quarantine is GIT_QUARANTINE_PATH from git.
	Quarantine string
	// Receiver is the pid of the git process that runs the hook
	// (receive-pack, for a push).
	Receiver int
	// Dial returns the agent of a data dir.
	Dial func(dataDir string) Agent
	// Out receives what the pusher sees.
	Out io.Writer
}

// Run is the pre-receive hook: it has the agent build and health-check the
// push described by in and returns nil once the new release is up and
// waits for git; its error is the reason the push is refused. The slot
// switches to the release only as git moves the branch (Transaction).
func (h *Hook) Run(ctx context.Context, in io.Reader) error {
	_, dataDir, slot, err := Locate(h.GitDir)
	if err != nil {
		return err
	}
	updates, err := ParseUpdates(in)
	if err != nil {
		return err
	}
	branch, u, err := Check(slot, updates)
	if err != nil {
		return err
	}
	agent := h.Dial(dataDir)
	rec, err := agent.Push(ctx, slot, deploy.Push{Branch: branch, Old: u.Old, Commit: u.New, Quarantine: h.Quarantine, Receiver: h.Receiver})
	if err != nil {
		return err
	}
	fmt.Fprintf(h.Out, "slotagent: deploying %s (branch %s) into slot %s: deploy %s\n", shortID(u.New), branch, slot, rec.ID)
	if err := agent.FollowPush(ctx, rec.ID, h.Out); err != nil {
		return fmt.Errorf("follow deploy %s: %w", rec.ID, err)
	}
	if rec, err = agent.Deploy(ctx, rec.ID); err != nil {
		return err
	}
	switch rec.Status {
	case deploy.Running:
		fmt.Fprintf(h.Out, "slotagent: %s is up; slot %s switches to it as git moves branch %s\n", shortID(u.New), slot, branch)
		return nil
	case deploy.Succeeded:
		return nil
	}
	msg, _, _ := strings.Cut(rec.Error, "\n")
	return fmt.Errorf("deploy %s %s: %s; the slot keeps serving what it served", rec.ID, rec.Status, msg)
}

// Transaction is one run of the repository's reference-transaction hook
// in state (prepared, committed or aborted), with the refs git updates on
// in: it tells the agent, whose push deploy switches the slot as git
// moves the branch (see deploy.RefUpdate). An error in state prepared
// makes git abort the update: so does an agent that does not answer,
// since a push it cannot see through must not land.
func (h *Hook) Transaction(ctx context.Context, state string, in io.Reader) error {
	_, dataDir, slot, err := Locate(h.GitDir)
	if err != nil {
		return err
	}
	ev := deploy.RefEvent{State: state, Receiver: h.Receiver}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		// Symbolic refs may come as "ref:<name>" values: they are no
		// branch moving to a commit, which is what a deploy waits for.
		if f := strings.Fields(sc.Text()); len(f) == 3 {
			ev.Changes = append(ev.Changes, deploy.RefChange{Old: f[0], New: f[1], Ref: f[2]})
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read hook input: %w", err)
	}
	msg, err := h.Dial(dataDir).RefUpdate(ctx, slot, ev)
	if msg != "" {
		fmt.Fprintf(h.Out, "slotagent: %s\n", msg)
	}
	if err != nil && state != deploy.RefPrepared {
		fmt.Fprintf(h.Out, "slotagent: %v\n", err)
		return nil
	}
	return err
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
