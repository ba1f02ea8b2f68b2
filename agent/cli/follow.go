package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/follow"
)

func followCmd() *cobra.Command {
	var req admin.FollowRequest
	var off bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "follow SLOT [--branch B] [--interval 30s] | SLOT --off",
		Short: "Deploy the slot's branch whenever it moves upstream (again: resume after a pause)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if off && (req.Branch != "" || interval != 0) {
				return fmt.Errorf("--off goes alone, without --branch or --interval")
			}
			req.On = !off
			if interval != 0 {
				req.Interval = interval.String()
			}
			var st follow.Status
			if err := newClient(dataDir(cmd)).call("PUT", "/api/slots/"+args[0]+"/follow", req, &st); err != nil {
				return err
			}
			if off {
				fmt.Fprintf(cmd.OutOrStdout(), "slot %s no longer follows a branch (what it serves stays)\n", args[0])
				return nil
			}
			printFollow(cmd.OutOrStdout(), args[0], st)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Branch, "branch", "", "branch to follow (default: the one the slot follows, else its release's, else the default branch)")
	f.DurationVar(&interval, "interval", 0, "time between two checks of the branch (default 30s; 1s to 24h)")
	f.BoolVar(&off, "off", false, "stop following (the slot keeps serving what it serves)")
	return cmd
}

func previewCmd() *cobra.Command {
	var req admin.PreviewRequest
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "preview REPO BRANCH [--slot X] [--release-on-delete]",
		Short: "Deploy a branch into a free slot (or the one named) that then follows it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Repo, req.Branch = args[0], args[1]
			if interval != 0 {
				req.Interval = interval.String()
			}
			var ans admin.PreviewAnswer
			if err := newClient(dataDir(cmd)).call("POST", "/api/previews", req, &ans); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "slot %s previews branch %s", ans.Slot, req.Branch)
			if ans.URL != "" {
				fmt.Fprintf(w, " at %s", ans.URL)
			}
			fmt.Fprintln(w)
			printFollow(w, ans.Slot, ans.Follow)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Slot, "slot", "", "slot to use, replacing what it serves (default: a free one)")
	f.DurationVar(&interval, "interval", 0, "time between two checks of the branch (default 30s)")
	f.BoolVar(&req.ReleaseOnDelete, "release-on-delete", false, "when the branch is deleted upstream, return the slot to its placeholder")
	return cmd
}

// printFollow is one line about a slot's following.
func printFollow(w io.Writer, slot string, st follow.Status) {
	if !st.On {
		fmt.Fprintf(w, "slot %s follows no branch\n", slot)
		return
	}
	branch := st.Branch
	if branch == "" {
		branch = "(default branch)"
	}
	fmt.Fprintf(w, "slot %s follows %s of %s every %s: %s: %s\n", slot, branch, st.Repo, st.Interval, st.State, st.Message)
}

// printFollowing lists the slots that follow a branch (`slotagent status`).
func printFollowing(w io.Writer, c *client) {
	for _, name := range config.SlotNames {
		var st follow.Status
		if err := c.call("GET", "/api/slots/"+name+"/follow", nil, &st); err == nil && st.On {
			printFollow(w, name, st)
		}
	}
}
