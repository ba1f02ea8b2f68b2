package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/postgres"
)

func dbCmd() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "db SLOT url|reset",
		Short: "A slot's own PostgreSQL database: print its URL, or empty it (reset --yes)",
		Long: "url prints the database's connection URL, password included, from the agent's credentials file " +
			"(SLOT may also be workspace: the workspace_db for your own shell).\n" +
			"reset drops the slot's database and makes it anew, empty, then restarts the slot's app; it needs --yes.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			target, action := args[0], args[1]
			if !config.ValidSlot(target) && (target != "workspace" || action != "url") {
				return fmt.Errorf("unknown slot %q: slots are a, b, c, d, e (and workspace, for url)", target)
			}
			switch action {
			case "url":
				url, err := postgres.URL(postgres.Dir(dataDir(cmd)), target)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), url)
				return nil
			case "reset":
				return resetDB(cmd, target, yes)
			default:
				return fmt.Errorf("unknown action %q: url or reset", action)
			}
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm a reset: every table of the database is dropped")
	return cmd
}

func resetDB(cmd *cobra.Command, slot string, yes bool) error {
	if !yes {
		return fmt.Errorf("reset drops every table of database %s (slot %s): run `slotagent db %s reset --yes`",
			postgres.SlotRole(slot), slot, slot)
	}
	var res admin.Result
	if err := newClient(dataDir(cmd)).call("POST", "/api/slots/"+slot+"/db/reset", admin.ResetRequest{Confirm: true}, &res); err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), res.Message)
	return nil
}

// printDatabase writes PostgreSQL's line under the status table, e.g.
// "postgres: online on 127.0.0.1:5432, 6 of 6 databases up".
func printDatabase(w io.Writer, c *client) {
	var st postgres.Status
	if err := c.call("GET", "/api/db", nil, &st); err != nil {
		fmt.Fprintf(w, "postgres: unknown (%v)\n", err)
		return
	}
	line := "postgres: " + st.State
	if st.State == postgres.StateOnline {
		up := 0
		for _, db := range st.Databases {
			if db.Up {
				up++
			}
		}
		line += fmt.Sprintf(" on %s:%d, %d of %d databases up", st.Host, st.Port, up, len(st.Databases))
	}
	if st.Detail != "" {
		line += " (" + st.Detail + ")"
	}
	fmt.Fprintln(w, line)
}

// databaseChecks is validate's check of PostgreSQL, unless it is off.
func databaseChecks(c *client) []check {
	var st postgres.Status
	if err := c.call("GET", "/api/db", nil, &st); err != nil {
		return []check{{name: "PostgreSQL", err: err}}
	}
	if st.State == postgres.StateOff {
		return nil
	}
	var err error
	if st.State != postgres.StateOnline {
		err = errors.New(st.State)
		if st.Detail != "" {
			err = fmt.Errorf("%s: %s", st.State, st.Detail)
		}
	}
	for _, db := range st.Databases {
		if err == nil && !db.Up {
			err = fmt.Errorf("database %s is missing", db.Name)
		}
	}
	// Its set-up (initdb on a first boot), or its restart by the
	// supervisor, may still end well.
	starting := st.State == postgres.StateStarting || st.State == postgres.StateDown
	return []check{{name: fmt.Sprintf("PostgreSQL on %s:%d online with every database", st.Host, st.Port), err: err, starting: starting}}
}
