package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/gitpush"
)

// hookCmd is the name of the hidden command that runs the pre-receive
// hook of a slot's repository.
const hookCmd = "git-hook"

// Args maps the process's argv to the command line to run: the slotagent
// binary run by git as a repository's pre-receive hook (through a link of
// that name) runs the hook command.
func Args(argv []string) []string {
	if len(argv) > 0 && filepath.Base(argv[0]) == gitpush.HookName {
		return []string{hookCmd}
	}
	if len(argv) == 0 {
		return nil
	}
	return argv[1:]
}

func gitRemoteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "git-remote SLOT",
		Short: "Print the git remote that deploys this slot on push (through Coder's SSH), and how to add it",
		Args:  slotArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r gitpush.Remote
			if err := newClient(dataDir(cmd)).call("GET", "/api/slots/"+args[0]+"/git-remote", nil, &r); err != nil {
				return err
			}
			if r.Host == "" {
				// The agent may not know the workspace that this shell,
				// started by the Coder agent, knows.
				home, _ := os.UserHomeDir()
				if again, err := gitpush.Describe(r.Repo, r.Slot, home, os.Getenv("CODER_WORKSPACE_NAME")); err == nil {
					r = again
				}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s\n\nOn your machine (after `coder config-ssh`), in the app's repository:\n", r.URL)
			for _, c := range r.Commands {
				fmt.Fprintf(out, "  %s\n", c)
			}
			if r.Host == "" {
				fmt.Fprintf(out, "\nThe workspace name is unknown here (CODER_WORKSPACE_NAME): put your ssh host for this workspace in front, as in coder.<workspace>:%s\n", r.Path)
			}
			fmt.Fprintf(out, "\nA push of branch %s deploys it into slot %s; the deploy's log shows in the push's output, and a failed deploy rejects the push.\n", r.Branch, r.Slot)
			return nil
		},
	}
}

// gitHookCmd runs the hooks of a slot's repository: git runs them
// (through the repository's hook script) in the repository, with the refs
// on stdin: pre-receive (no argument: a repository made before the hook
// script) and reference-transaction STATE.
func gitHookCmd() *cobra.Command {
	return &cobra.Command{
		Use:    hookCmd + " [" + gitpush.HookName + " | " + gitpush.TransactionHook + " STATE]",
		Short:  "Run a hook of a slot's git repository (git runs it)",
		Hidden: true,
		Args: func(_ *cobra.Command, args []string) error {
			switch {
			case len(args) == 0, len(args) == 1 && args[0] == gitpush.HookName, len(args) == 2 && args[0] == gitpush.TransactionHook:
				return nil
			}
			return fmt.Errorf("unknown hook %q: this binary runs %s and %s", strings.Join(args, " "), gitpush.HookName, gitpush.TransactionHook)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			gitDir := os.Getenv("GIT_DIR")
			if gitDir == "" {
				gitDir = "."
			}
			h := &gitpush.Hook{
				GitDir:     gitDir,
				Quarantine: os.Getenv("GIT_QUARANTINE_PATH"),
				Receiver:   os.Getppid(),
				Dial:       func(dir string) gitpush.Agent { return newClient(dir) },
				Out:        cmd.ErrOrStderr(),
			}
			var err error
			if len(args) == 2 {
				err = h.Transaction(ctx, args[1], cmd.InOrStdin())
			} else {
				err = h.Run(ctx, cmd.InOrStdin())
			}
			if err != nil {
				return fmt.Errorf("push refused: %w", err)
			}
			return nil
		},
	}
}

// FollowPush copies a push deploy's log to w until the deploy ends or
// waits for git.
func (c *client) FollowPush(ctx context.Context, id string, w io.Writer) error {
	return c.followLog(ctx, "/api/deploys/"+id+"/log?until=git", w)
}

// RefUpdate reports a run of the reference-transaction hook.
func (c *client) RefUpdate(ctx context.Context, slot string, ev deploy.RefEvent) (string, error) {
	var ans admin.RefAnswer
	err := c.callContext(ctx, "POST", "/api/slots/"+slot+"/push/ref", ev, &ans)
	return ans.Message, err
}

// Push starts the deploy of a pushed commit.
func (c *client) Push(ctx context.Context, slot string, p deploy.Push) (deploy.Record, error) {
	var rec deploy.Record
	return rec, c.callContext(ctx, "POST", "/api/slots/"+slot+"/push", p, &rec)
}

// Deploy returns a deploy's record.
func (c *client) Deploy(ctx context.Context, id string) (deploy.Record, error) {
	var rec deploy.Record
	return rec, c.callContext(ctx, "GET", "/api/deploys/"+id, nil, &rec)
}
