package gitpush

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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
	// FollowLog copies a deploy's log to w until the deploy ends.
	FollowLog(ctx context.Context, id string, w io.Writer) error
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
	// Dial returns the agent of a data dir.
	Dial func(dataDir string) Agent
	// Out receives what the pusher sees.
	Out io.Writer
}

// Run deploys the push described by in (pre-receive's input) and returns
// nil only when the deploy succeeded; its error is the reason the push is
// refused. git, and the git commands the hook runs, see the pushed objects
// through the environment git gave the hook.
func (h *Hook) Run(ctx context.Context, in io.Reader) error {
	repo, dataDir, slot, err := Locate(h.GitDir)
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
	rec, err := agent.Push(ctx, slot, deploy.Push{Branch: branch, Old: u.Old, Commit: u.New, Quarantine: h.Quarantine})
	if err != nil {
		return err
	}
	fmt.Fprintf(h.Out, "slotagent: deploying %s (branch %s) into slot %s: deploy %s\n", shortID(u.New), branch, slot, rec.ID)
	if err := agent.FollowLog(ctx, rec.ID, h.Out); err != nil {
		return fmt.Errorf("follow deploy %s: %w", rec.ID, err)
	}
	if rec, err = agent.Deploy(ctx, rec.ID); err != nil {
		return err
	}
	if rec.Status != deploy.Succeeded {
		msg, _, _ := strings.Cut(rec.Error, "\n")
		return fmt.Errorf("deploy %s %s: %s; the slot keeps serving what it served", rec.ID, rec.Status, msg)
	}
	if prev := trackedBranch(repo); prev != branch {
		if err := git(ctx, outsideQuarantine(), "--git-dir="+repo, "symbolic-ref", "HEAD", u.Ref); err != nil {
			return fmt.Errorf("slot %s deployed %s, but tracking it failed: %w", slot, branch, err)
		}
		fmt.Fprintf(h.Out, "slotagent: slot %s now tracks branch %s (was %s)\n", slot, branch, prev)
	}
	fmt.Fprintf(h.Out, "slotagent: slot %s serves %s (release %s)\n", slot, shortID(u.New), rec.Release)
	return nil
}

// outsideQuarantine is the hook's environment without the variables that
// make git refuse ref changes during a push.
func outsideQuarantine() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GIT_QUARANTINE_PATH", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_DIR":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
