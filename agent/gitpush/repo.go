// Package gitpush makes `git push` deploy a slot. Each slot gets a bare
// repository, <data dir>/git/<slot>.git (deploy.GitRepo), whose hooks run
// the slotagent binary: hooks/pre-receive and hooks/reference-transaction
// are one small fixed script (hookScript: the same text in every
// repository, nothing from input is written into it or run by a shell)
// that runs the binary hooks/slotagent links to, and refuses when that
// binary is gone, so a moved binary fails closed instead of letting git
// skip the hook.
//
// The invariant: a push that git does not accept changes nothing that
// serves; a push that git accepts is what serves. pre-receive alone cannot
// give it, because git may refuse the ref update after pre-receive
// accepted (the branch moved since the push began: "is at B but expected
// A"; a ref in the way: main for main/x). So a push is deployed in two
// halves, with the agent holding the slot throughout (no other deploy,
// push or rollback meanwhile):
//
//   - pre-receive (Hook.Run) applies the policy (Check; the agent applies
//     it again, with what needs the repository, against the branch's value
//     now), has the agent build the commit and start it beside the serving
//     release until its health gate passes, streaming the deploy's log
//     back to the pusher ("remote: …" lines), and exits 0 then. Nothing
//     serves the new release yet; any failure rejects the push.
//   - reference-transaction (Hook.Transaction) runs as git updates the
//     ref. In state "prepared" git holds the ref's lock and has checked its
//     old value and its place among the other refs: every reason git has to
//     refuse is behind it, and the slot switches then (a failed switch
//     makes the hook refuse, and git aborts). In "committed" the agent reads
//     the branch, makes it the tracked one and drains the previous app.
//
// Whatever happens otherwise — "aborted", receive-pack gone (a pidfd of
// the hook's parent, opened while it surely lives), no news within a
// bound, the pusher disconnected — the deploy reads the branch in the
// repository and lets it decide: the pushed commit serves when, and only
// when, the branch points at it (see agent/deploy's pushwait.go).
//
// Quarantine: while pre-receive runs, git keeps the pushed objects in a
// quarantine folder inside the repository's objects folder
// (GIT_QUARANTINE_PATH) and only migrates them once the hook accepts, so a
// `git fetch` by the agent from the repository would not see the pushed
// commit. The hook passes the quarantine's path to the agent, which
// checks it lies directly in that repository's objects folder and checks
// the commit out with git reading that folder first and the repository's
// own objects after (GIT_OBJECT_DIRECTORY and
// GIT_ALTERNATE_OBJECT_DIRECTORIES, as git sets them for the hook). No
// objects are copied, no bundle is made; the quarantine lives as long as
// the hook, and the hook waits for the checkout.
//
// The hook finds the agent from where the repository is: its data dir is
// the folder above git/, so no environment is needed (git runs the hook
// as the SSH user, whose environment may differ from the agent's).
package gitpush

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/shell"
)

// HookName is the name git runs the hook under; the slotagent binary
// reached through a link of that name runs the hook (as the hook of a
// repository made before hookScript existed, until the agent rewrites it).
const HookName = "pre-receive"

// TransactionHook is the name of the hook git runs as it updates refs:
// the push's deploy switches the slot there (see Hook.Transaction).
const TransactionHook = "reference-transaction"

// binaryLink is the link, in the hooks folder, to the slotagent binary
// that hookScript runs.
const binaryLink = "slotagent"

// hookScript is every hook of a slot repository: a fixed text (nothing
// from input is ever written into it) that runs the slotagent binary
// hooks/slotagent links to, and refuses when that binary is gone (a moved
// or upgraded binary), so that no push lands unchecked even with the
// agent down. git skips a hook that cannot be run, which a link straight
// to the binary became when the binary moved.
const hookScript = `#!/bin/sh
# A hook of a coder-slots slot repository, written by slotagent: it runs
# the slotagent binary that hooks/slotagent links to. Do not edit: the
# agent writes it again at every start.
bin="${0%/*}/slotagent"
if [ ! -x "$bin" ]; then
	echo "slotagent: push refused: this repository's hook cannot run slotagent ($bin links to a binary that is gone); start the agent (slotagent run) to repair it" >&2
	exit 1
fi
exec "$bin" git-hook "${0##*/}" "$@"
`

// initialBranch is the branch a new repository deploys until another one
// is pushed.
const initialBranch = "main"

// Ensure makes the slot's repository when it does not exist and points its
// hook at exe (the slotagent binary); it returns the
// repository's path. It is safe to call at any time and from several
// goroutines.
func Ensure(ctx context.Context, dataDir, slot, exe string) (string, error) {
	repo := deploy.GitRepo(dataDir, slot)
	_, err := os.Stat(filepath.Join(repo, "HEAD"))
	if errors.Is(err, fs.ErrNotExist) {
		err = create(ctx, repo)
	}
	if err != nil {
		return "", fmt.Errorf("git repository of slot %s: %w", slot, err)
	}
	if err := installHooks(repo, exe); err != nil {
		return "", fmt.Errorf("git repository of slot %s: %w", slot, err)
	}
	return repo, nil
}

// Refresh points the hook of every existing repository of slots at exe,
// so that a moved binary deploys pushes again (until then, the hook
// refuses them), and removes the quarantines that pushes killed midway
// left behind (see removeStaleQuarantines). The agent calls it at start.
func Refresh(dataDir string, slots []string, exe string) error {
	var errs []error
	for _, s := range slots {
		repo := deploy.GitRepo(dataDir, s)
		if _, err := os.Stat(filepath.Join(repo, "HEAD")); err == nil {
			errs = append(errs, installHooks(repo, exe), removeStaleQuarantines(repo, time.Now().Add(-staleQuarantine)))
		}
	}
	return errors.Join(errs...)
}

// staleQuarantine is how long a push's quarantine may go unwritten before
// it counts as left behind: a push still uploading writes into it.
const staleQuarantine = 10 * time.Minute

// quarantinePrefix starts the name of the folder, in the repository's
// objects folder, where git receives a push's objects until its
// pre-receive hook accepts (and removes it when the push ends, unless
// receive-pack is killed).
const quarantinePrefix = "tmp_objdir-incoming-"

// removeStaleQuarantines removes the quarantines of repo in which nothing
// was written since before.
func removeStaleQuarantines(repo string, before time.Time) error {
	objects := filepath.Join(repo, "objects")
	entries, err := os.ReadDir(objects)
	if err != nil {
		return fmt.Errorf("look for leftover pushes: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), quarantinePrefix) {
			continue
		}
		dir := filepath.Join(objects, e.Name())
		if newest(dir).Before(before) {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, fmt.Errorf("remove a killed push's quarantine: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// newest is the latest modification time in the tree at dir.
func newest(dir string) time.Time {
	var t time.Time
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil && info.ModTime().After(t) {
			t = info.ModTime()
		}
		return nil
	})
	return t
}

// create makes the bare repository in a temporary folder beside it and
// renames it into place, so a half-made repository is never seen.
func create(ctx context.Context, repo string) error {
	parent := filepath.Dir(repo)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, ".new-")
	if err != nil {
		return fmt.Errorf("create repository: %w", err)
	}
	defer os.RemoveAll(tmp)
	steps := [][]string{
		{"init", "--bare", "--quiet", "--template=", "--initial-branch=" + initialBranch, tmp},
		// A hooks path set elsewhere (a global core.hooksPath) must not
		// make git skip the deploy: hooks are this repository's own.
		{"--git-dir=" + tmp, "config", "core.hooksPath", "hooks"},
		// The hook refuses these first, with a message; git refuses them
		// too, should the hook ever not run.
		{"--git-dir=" + tmp, "config", "receive.denyDeletes", "true"},
		{"--git-dir=" + tmp, "config", "receive.denyNonFastForwards", "true"},
	}
	for _, args := range steps {
		if err := git(ctx, nil, args...); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(tmp, "hooks"), 0o755); err != nil {
		return fmt.Errorf("create hooks folder: %w", err)
	}
	if err := os.Rename(tmp, repo); err != nil {
		if _, serr := os.Stat(filepath.Join(repo, "HEAD")); serr == nil {
			return nil // made meanwhile by another caller
		}
		return fmt.Errorf("create repository: %w", err)
	}
	return nil
}

// installHooks writes hookScript as the repository's pre-receive and
// reference-transaction hooks and
// points hooks/slotagent at exe, each replaced atomically when it differs.
func installHooks(repo, exe string) error {
	hooks := filepath.Join(repo, "hooks")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		return fmt.Errorf("create hooks folder: %w", err)
	}
	if err := replaceLink(filepath.Join(hooks, binaryLink), exe); err != nil {
		return fmt.Errorf("link the hook's binary: %w", err)
	}
	for _, name := range []string{HookName, TransactionHook} {
		if err := writeScript(filepath.Join(hooks, name)); err != nil {
			return fmt.Errorf("write the %s hook: %w", name, err)
		}
	}
	return nil
}

// replaceLink makes path a symlink to target, replacing what is there.
func replaceLink(path, target string) error {
	if cur, err := os.Readlink(path); err == nil && cur == target {
		return nil
	}
	tmp := path + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// writeScript makes path an executable file holding hookScript,
// replacing what is there (a link from an older agent included).
func writeScript(path string) error {
	if st, err := os.Lstat(path); err == nil && st.Mode().IsRegular() && st.Mode().Perm() == 0o755 {
		if b, err := os.ReadFile(path); err == nil && string(b) == hookScript {
			return nil
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".hook-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.WriteString(hookScript)
	if err == nil {
		err = f.Chmod(0o755)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// git runs git with args and env (nil: the process's own).
func git(ctx context.Context, env []string, args ...string) error {
	cmd := exec.Command("git", args...)
	cmd.Env = env
	cmd.Dir = "/"
	if _, err := reaper.Output(ctx, cmd); err != nil {
		return fmt.Errorf("git %s: %w", args[0], err)
	}
	return nil
}

// Remote says how to reach a slot's repository from the user's machine.
type Remote struct {
	// Slot is the slot the repository deploys.
	Slot string `json:"slot"`
	// Repo is the repository's absolute path in the workspace.
	Repo string `json:"repo"`
	// Path is the repository's path as ssh reaches it: relative to the
	// home folder when it is inside it, else absolute.
	Path string `json:"path"`
	// Host is the ssh host of the workspace that `coder config-ssh` sets
	// up (coder.<workspace>), when the workspace's name is known.
	Host string `json:"host,omitempty"`
	// URL is the remote to add: Host:Path, or Repo without a host.
	URL string `json:"url"`
	// Branch is the branch the slot tracks (the repository's HEAD).
	Branch string `json:"branch"`
	// Commands are the commands to run on the user's machine.
	Commands []string `json:"commands"`
}

// safePath is what a repository path may hold to be given to ssh as is.
var safePath = regexp.MustCompile(`^[A-Za-z0-9._+/~][A-Za-z0-9._+/~-]*$`)

// workspaceName is a Coder workspace name.
var workspaceName = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$`)

// Describe tells how to push to repo, the repository of slot, from a
// machine where `coder config-ssh` ran; home is the home folder of the
// workspace's user and workspace the Coder workspace name (empty or
// invalid: unknown).
func Describe(repo, slot, home, workspace string) (Remote, error) {
	r := Remote{Slot: slot, Repo: repo, Path: repo, Branch: trackedBranch(repo)}
	if rel, err := filepath.Rel(home, repo); home != "" && err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
		r.Path = rel
	}
	if !safePath.MatchString(r.Path) {
		return Remote{}, fmt.Errorf("the repository path %q cannot be used as a git remote over ssh: use a data dir (--data-dir, SLOTAGENT_DATA_DIR) whose path has only letters, digits and . _ + - / ~", r.Path)
	}
	r.URL = repo
	if workspaceName.MatchString(workspace) {
		r.Host = "coder." + workspace
		r.URL = r.Host + ":" + r.Path
	}
	name := "slot-" + slot
	r.Commands = []string{"git remote add " + name + " " + r.URL, "git push " + name + " " + shell.Quote(r.Branch)}
	return r, nil
}

// trackedBranch is the branch the repository's HEAD names.
func trackedBranch(repo string) string {
	b, err := os.ReadFile(filepath.Join(repo, "HEAD"))
	if err != nil {
		return initialBranch
	}
	if branch, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "ref: refs/heads/"); ok && branch != "" {
		return branch
	}
	return initialBranch
}
