package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

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

// gitHookCmd runs the pre-receive hook of a slot's repository: git runs
// it (through the repository's hook script) in the repository with the
// pushed refs on stdin.
func gitHookCmd() *cobra.Command {
	return &cobra.Command{
		Use:    hookCmd + " [" + gitpush.HookName + "]",
		Short:  "Run the pre-receive hook of a slot's git repository (git runs it)",
		Hidden: true,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 || len(args) == 1 && args[0] != gitpush.HookName {
				return fmt.Errorf("unknown hook %q: this binary runs %s", strings.Join(args, " "), gitpush.HookName)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			gitDir := os.Getenv("GIT_DIR")
			if gitDir == "" {
				gitDir = "."
			}
			h := &gitpush.Hook{
				GitDir:     gitDir,
				Quarantine: os.Getenv("GIT_QUARANTINE_PATH"),
				Dial:       func(dir string) gitpush.Agent { return newClient(dir) },
				Out:        cmd.ErrOrStderr(),
			}
			if err := h.Run(ctx, cmd.InOrStdin()); err != nil {
				return fmt.Errorf("push refused: %w", err)
			}
			return nil
		},
	}
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
