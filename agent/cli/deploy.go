package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/deploy"
)

func deployCmd() *cobra.Command {
	var req deploy.Request
	var env []string
	var wait bool
	cmd := &cobra.Command{
		Use:   "deploy SLOT (--repo URL [--ref REF] | --dir PATH)",
		Short: "Deploy a git repository or a folder into a slot, with zero downtime",
		Args:  slotArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if req.Env, err = parseAssignments(env); err != nil {
				return err
			}
			if req.Dir != "" {
				if req.Dir, err = filepath.Abs(req.Dir); err != nil {
					return fmt.Errorf("--dir: %w", err)
				}
			}
			c := newClient(dataDir(cmd))
			var rec deploy.Record
			if err := c.call("POST", "/api/slots/"+args[0]+"/deploy", req, &rec); err != nil {
				return err
			}
			return reportDeploy(cmd, c, rec, wait)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Repo, "repo", "", "git repository URL (https, ssh, git, file or a local path)")
	f.StringVar(&req.Ref, "ref", "", "branch, tag or commit (default: the repository's default branch)")
	f.StringVar(&req.Dir, "dir", "", "deploy this folder instead (a git work tree deploys HEAD plus uncommitted files)")
	f.StringArrayVar(&env, "env", nil, "K=V added to the slot's env (repeatable)")
	f.StringVar(&req.Build, "build", "", "build command (default: the package.json build script; Go: go build of the main package)")
	f.StringVar(&req.Start, "start", "", "start command (default: Procfile web:, else the language's: npm start, node <main>, the Go binary)")
	f.StringVar(&req.StaticDir, "static-dir", "", "serve this folder of the app as a static site (default: index.html at the root, or the build's dist/, build/, public/ or out/)")
	f.BoolVar(&req.SPA, "spa", false, "static site: answer paths that name no file with index.html (single-page apps)")
	f.BoolVar(&wait, "wait", false, "follow the deploy log and exit non-zero if the deploy fails")
	return cmd
}

func rollbackCmd() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "rollback SLOT [RELEASE]",
		Short: "Switch a slot back to a kept release (default: the one that served before the current one)",
		Args:  slotArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := admin.RollbackRequest{}
			if len(args) == 2 {
				body.Release = args[1]
			}
			c := newClient(dataDir(cmd))
			var rec deploy.Record
			if err := c.call("POST", "/api/slots/"+args[0]+"/rollback", body, &rec); err != nil {
				return err
			}
			return reportDeploy(cmd, c, rec, wait)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the log and exit non-zero if the rollback fails")
	return cmd
}

func envCmd() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "env SLOT [set K=V ...] [unset K ...]",
		Short: "Show a slot's env (values masked) or change it: a change makes a new release",
		Args:  slotArgs(1, math.MaxInt),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := newClient(dataDir(cmd))
			var ans admin.EnvAnswer
			if len(args) == 1 {
				if err := c.call("GET", "/api/slots/"+args[0]+"/env", nil, &ans); err != nil {
					return err
				}
				printEnv(cmd.OutOrStdout(), ans.Env)
				return nil
			}
			req, err := parseEnvChange(args[1:])
			if err != nil {
				return err
			}
			if err := c.call("POST", "/api/slots/"+args[0]+"/env", req, &ans); err != nil {
				return err
			}
			printEnv(cmd.OutOrStdout(), ans.Env)
			if ans.Deploy == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "saved for the next deploy of slot %s\n", args[0])
				return nil
			}
			return reportDeploy(cmd, c, *ans.Deploy, wait)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the new release's deploy and exit non-zero if it fails")
	return cmd
}

// parseEnvChange reads "set K=V ... unset K ..." words.
func parseEnvChange(words []string) (admin.EnvRequest, error) {
	var req admin.EnvRequest
	var sets []string
	mode := ""
	for _, w := range words {
		switch {
		case w == "set" || w == "unset":
			mode = w
		case mode == "set":
			sets = append(sets, w)
		case mode == "unset":
			req.Unset = append(req.Unset, w)
		default:
			return req, fmt.Errorf("expected `set K=V ...` or `unset K ...`, got %q", w)
		}
	}
	var err error
	req.Set, err = parseAssignments(sets)
	return req, err
}

// parseAssignments turns K=V words into a map.
func parseAssignments(words []string) (map[string]string, error) {
	if len(words) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: expected K=V", w)
		}
		out[k] = v
	}
	return out, nil
}

func printEnv(w io.Writer, env map[string]string) {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s=%s\n", k, env[k])
	}
}

// reportDeploy prints a started deploy and, with wait, follows its log and
// fails when it did not succeed.
func reportDeploy(cmd *cobra.Command, c *client, rec deploy.Record, wait bool) error {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "deploy %s started (slot %s, %s)\n", rec.ID, rec.Slot, rec.Trigger)
	if !wait {
		fmt.Fprintf(out, "follow it with: slotagent deploy-log %s\n", rec.ID)
		return nil
	}
	return followDeploy(cmd, c, rec.ID)
}

// followDeploy copies a deploy's log until it ends and reports its outcome.
func followDeploy(cmd *cobra.Command, c *client, id string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := c.FollowLog(ctx, id, cmd.OutOrStdout())
	if ctx.Err() != nil {
		return fmt.Errorf("stopped following deploy %s (it goes on in the agent)", id)
	}
	if err != nil {
		return fmt.Errorf("follow deploy %s: %w", id, err)
	}
	var rec deploy.Record
	if err := c.call("GET", "/api/deploys/"+id, nil, &rec); err != nil {
		return err
	}
	if rec.Status != deploy.Succeeded {
		return fmt.Errorf("deploy %s %s: %s", id, rec.Status, firstLine(rec.Error))
	}
	fmt.Fprintf(cmd.OutOrStdout(), "deploy %s succeeded: slot %s serves release %s\n", id, rec.Slot, rec.Release)
	return nil
}

// FollowLog copies a deploy's log to w until the deploy ends.
func (c *client) FollowLog(ctx context.Context, id string, w io.Writer) error {
	return c.followLog(ctx, "/api/deploys/"+id+"/log", w)
}

// followLog copies the log at path to w until the agent ends it.
func (c *client) followLog(ctx context.Context, path string, w io.Writer) error {
	resp, err := c.do(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

func deployLogCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "deploy-log DEPLOY_ID",
		Short: "Print a deploy's log, following it while the deploy runs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return followDeploy(cmd, newClient(dataDir(cmd)), args[0])
		},
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
