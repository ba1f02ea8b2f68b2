package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/ecosystem"
	"github.com/coder-slots/coder-slots/agent/humanize"
	"github.com/coder-slots/coder-slots/agent/state"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

func statusCmd() *cobra.Command {
	var asJSON bool
	var metadataSlot string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every process like `pm2 ls`; --json prints GET /api/processes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list admin.ProcessList
			if err := newClient(dataDir(cmd)).call("GET", "/api/processes", nil, &list); err != nil {
				return err
			}
			if metadataSlot != "" {
				line, err := metadataLine(list, metadataSlot)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), line)
				return nil
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			printAgent(cmd.OutOrStdout(), newClient(dataDir(cmd)))
			printTable(cmd.OutOrStdout(), list)
			printFollowing(cmd.OutOrStdout(), newClient(dataDir(cmd)))
			printDatabase(cmd.OutOrStdout(), newClient(dataDir(cmd)))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (the shape of GET /api/processes)")
	cmd.Flags().StringVar(&metadataSlot, "metadata", "", "print one short line about SLOT, for Coder's agent metadata")
	return cmd
}

// metadataLine is one short line about a slot for the Coder dashboard, e.g.
// "online · r2 · up 3m · 1 restarts" or "placeholder".
func metadataLine(list admin.ProcessList, slot string) (string, error) {
	for _, p := range list.Processes {
		if p.Slot != slot {
			continue
		}
		if p.Type == "static" {
			return "static · " + p.Release, nil
		}
		if p.Type != "app" {
			if p.Error != "" {
				return "placeholder · " + clip(p.Error, 60), nil
			}
			return "placeholder", nil
		}
		parts := []string{p.Status, p.Release}
		if p.Status == "online" {
			parts = append(parts, "up "+humanize.Millis(p.Uptime))
		}
		if p.Restarts > 0 {
			parts = append(parts, fmt.Sprintf("%d restarts", p.Restarts))
		}
		return strings.Join(parts, " · "), nil
	}
	return "", fmt.Errorf("unknown slot %q", slot)
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// printAgent is the agent's line: its version, its role and its PID.
func printAgent(w io.Writer, c *client) {
	var about admin.About
	if err := c.call("GET", "/healthz", nil, &about); err != nil {
		return
	}
	role := "as the container's entrypoint (it runs the Coder agent too)"
	if about.Role == config.RoleService {
		role = "as a service beside the Coder agent"
	}
	fmt.Fprintf(w, "slotagent %s %s, pid %d, data dir %s\n\n", about.Version, role, about.PID, about.DataDir)
}

func printTable(w io.Writer, list admin.ProcessList) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tPID\tUPTIME\tRESTARTS\tCPU\tMEMORY\tTYPE\tURL")
	for _, p := range list.Processes {
		status := p.Status
		if p.Error != "" {
			status += " (" + p.Error + ")"
		}
		kind := p.Type
		if p.Language != "" {
			kind += " (" + p.Language + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%.1f%%\t%s\t%s\t%s\n", p.Name, status, p.PID,
			humanize.Millis(p.Uptime), p.Restarts, p.CPU, humanize.Bytes(p.Memory), kind, p.URL)
	}
	tw.Flush()
	for _, p := range list.Processes {
		if p.Plan != "" {
			fmt.Fprintf(w, "%s: %s\n", p.Name, p.Plan)
		}
	}
	fmt.Fprintf(w, "%d of %d online\n", list.Online, list.Total)
}

func configCmd() *cobra.Command {
	var format string
	var reveal bool
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the generated process config (json, or ecosystem: PM2's ecosystem.config.js of every process)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "json" && format != "ecosystem" {
				return fmt.Errorf("--format must be json or ecosystem, not %q", format)
			}
			if reveal && format != "ecosystem" {
				return errors.New("--reveal-env goes with --format ecosystem")
			}
			c := newClient(dataDir(cmd))
			if format == "ecosystem" {
				path := "/api/ecosystem"
				if reveal {
					path += "?reveal=1"
				}
				var f ecosystem.File
				if err := c.call("GET", path, nil, &f); err != nil {
					return err
				}
				return f.WriteJS(cmd.OutOrStdout())
			}
			var pc admin.ProcessConfig
			if err := c.call("GET", "/api/config", nil, &pc); err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(pc)
		},
	}
	cmd.Flags().StringVar(&format, "format", "json", "json or ecosystem")
	cmd.Flags().BoolVar(&reveal, "reveal-env", false, "ecosystem: write the env values as they are, not masked (the file then holds secrets)")
	return cmd
}

// check is one line of `slotagent validate`.
type check struct {
	name string
	err  error
	// starting: it failed because something is still starting (the agent,
	// a process launching, PostgreSQL's set-up), which --wait waits for.
	starting bool
}

func validateCmd() *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check that everything is up and answering; exit 1 naming what is not",
		Long: "Check that everything is up and answering; exit 1 naming what is not.\n" +
			"--wait DURATION gives what is still starting (the agent, a process launching, PostgreSQL's first boot) " +
			"that long, checking again every half second; anything else that fails ends the wait at once.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if wait < 0 {
				return fmt.Errorf("--wait must not be negative, not %s", wait)
			}
			deadline := time.Now().Add(wait)
			checks := runChecks(dataDir(cmd))
			for stillStarting(checks) && time.Now().Before(deadline) {
				time.Sleep(min(500*time.Millisecond, time.Until(deadline)))
				checks = runChecks(dataDir(cmd))
			}
			failed, starting := 0, 0
			for _, c := range checks {
				switch {
				case c.err != nil && c.starting:
					failed++
					starting++
					fmt.Fprintf(cmd.OutOrStdout(), "FAIL  %s: still starting: %v\n", c.name, c.err)
				case c.err != nil:
					failed++
					fmt.Fprintf(cmd.OutOrStdout(), "FAIL  %s: %v\n", c.name, c.err)
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "ok    %s\n", c.name)
				}
			}
			if failed > 0 {
				err := fmt.Errorf("%d of %d checks failed", failed, len(checks))
				if starting > 0 {
					err = fmt.Errorf("%w, %d of them still starting after %s (--wait gives them longer)", err, starting, wait)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "all %d checks passed\n", len(checks))
			return nil
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to DURATION (e.g. 60s) for what is still starting instead of failing at once")
	return cmd
}

// stillStarting reports whether some check failed and every failure is
// something still starting.
func stillStarting(checks []check) bool {
	failed := false
	for _, c := range checks {
		if c.err != nil && !c.starting {
			return false
		}
		failed = failed || c.err != nil
	}
	return failed
}

// runChecks is the old validation script's checks, for slotagent: agent up,
// every process online, every port answering, state file valid, logs writable.
func runChecks(dir string) []check {
	c := newClient(dir)
	var about admin.About
	if err := c.call("GET", "/healthz", nil, &about); err != nil {
		return []check{{name: "agent answering on " + c.socket, err: err, starting: errors.As(err, new(errNotRunning))}}
	}
	checks := []check{{name: "agent answering on " + c.socket}}
	var warned error
	if len(about.Warnings) > 0 {
		warned = errors.New(strings.Join(about.Warnings, "; "))
	}
	checks = append(checks, check{name: "no problems at start", err: warned})
	var list admin.ProcessList
	if err := c.call("GET", "/api/processes", nil, &list); err != nil {
		return append(checks, check{name: "process list", err: err})
	}
	sort.SliceStable(list.Processes, func(i, j int) bool { return list.Processes[i].Name < list.Processes[j].Name })
	for _, p := range list.Processes {
		var err error
		switch {
		case p.Status != "online" && p.Error != "":
			err = fmt.Errorf("status %s: %s", p.Status, p.Error)
		case p.Status != "online":
			err = fmt.Errorf("status %s", p.Status)
		case p.Error != "":
			err = fmt.Errorf("%s instead of its app: %s", p.Type, p.Error)
		}
		starting := p.Status == string(supervisor.Launching) || p.Status == string(supervisor.WaitingRestart)
		checks = append(checks, check{name: "process " + p.Name + " online", err: err, starting: starting})
	}
	var slots admin.SlotList
	if err := c.call("GET", "/api/slots", nil, &slots); err != nil {
		return append(checks, check{name: "slot list", err: err})
	}
	host := about.Bind
	if host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	checks = append(checks, probe(fmt.Sprintf("admin port %d answering", about.AdminPort), host, about.AdminPort, "/healthz"))
	for _, s := range slots.Slots {
		checks = append(checks, probe(fmt.Sprintf("slot %s port %d answering", s.Name, s.Port), host, s.Port, "/health"))
	}
	checks = append(checks, check{name: "state file " + about.StatePath + " valid", err: validState(about.StatePath)})
	checks = append(checks, check{name: "log dir " + about.LogDir + " writable", err: writable(about.LogDir)})
	checks = append(checks, databaseChecks(c)...)
	return checks
}

var probeClient = &http.Client{Timeout: 5 * time.Second}

// probe is the check named name: a GET of path on host:port wants a
// status below 500. A 503 is an app starting or restarting (the slot says
// so while it waits for its app).
func probe(name, host string, port int, path string) check {
	resp, err := probeClient.Get("http://" + net.JoinHostPort(host, strconv.Itoa(port)) + path)
	if err != nil {
		return check{name: name, err: err}
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return check{name: name, err: fmt.Errorf("answers %s", resp.Status), starting: resp.StatusCode == http.StatusServiceUnavailable}
	}
	return check{name: name}
}

func validState(path string) error {
	st, err := state.Load(path)
	if err != nil {
		return err
	}
	return state.Validate(st)
}

func writable(dir string) error {
	f, err := os.CreateTemp(dir, ".validate-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}
