package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/legacy"
	"github.com/coder-slots/coder-slots/agent/source"
)

func importLegacyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import-legacy PATH",
		Short: "Deploy every slot the old setup's slots.json had deployed, with its env",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			slots, err := legacy.Read(args[0], config.SlotNames)
			if err != nil {
				return err
			}
			// Check everything before deploying anything.
			for _, s := range slots {
				if !s.Deployed() {
					continue
				}
				if err := source.ValidateRepo(s.Repository); err != nil {
					return fmt.Errorf("%s: slot %s: %w", args[0], s.Name, err)
				}
				if err := source.ValidateRef(s.Branch); err != nil {
					return fmt.Errorf("%s: slot %s: %w", args[0], s.Name, err)
				}
				if err := deploy.ValidateEnv(s.Environment); err != nil {
					return fmt.Errorf("%s: slot %s: %w", args[0], s.Name, err)
				}
			}
			c := newClient(dataDir(cmd))
			out := cmd.OutOrStdout()
			failed := 0
			for _, s := range slots {
				if !s.Deployed() {
					fmt.Fprintf(out, "slot %s: %s in the old setup, left as a placeholder\n", s.Name, orDash(s.Status))
					continue
				}
				req := deploy.Request{Repo: s.Repository, Ref: s.Branch, Env: s.Environment}
				var rec deploy.Record
				if err := c.call("POST", "/api/slots/"+s.Name+"/deploy", req, &rec); err != nil {
					return fmt.Errorf("slot %s: %w", s.Name, err)
				}
				if err := reportDeploy(cmd, c, rec, true); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "slot %s: %v\n", s.Name, err)
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d slot(s) failed to deploy; the others are serving", failed)
			}
			return nil
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
