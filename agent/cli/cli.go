// Package cli is slotagent's command line: `run` starts the agent, the other
// commands talk to a running agent over its control socket.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/daemon"
	"github.com/coder-slots/coder-slots/agent/detach"
)

// New returns the root command; version is printed by `slotagent version`.
func New(version string) *cobra.Command {
	root := &cobra.Command{
		Use:           "slotagent",
		Short:         "Runs the admin panel and five deployment slots of a Coder workspace",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("data-dir", "", "data directory (env SLOTAGENT_DATA_DIR; default ~/data/slotagent)")
	root.AddCommand(
		runCmd(version),
		shutdownCmd(),
		statusCmd(),
		deployCmd(),
		deployLogCmd(),
		rollbackCmd(),
		envCmd(),
		importLegacyCmd(),
		slotActionCmd("stop", "Stop a slot's app and serve the placeholder", "POST", "/api/processes/%s/stop"),
		slotActionCmd("restart", "Restart a slot's app (or start its release again after a stop)", "POST", "/api/restart/%s"),
		logsCmd(),
		configCmd(),
		validateCmd(),
		dbCmd(),
		gitRemoteCmd(),
		gitHookCmd(),
		placeholderCmd(),
		followCmd(),
		previewCmd(),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  cobra.NoArgs,
			Run: func(cmd *cobra.Command, _ []string) {
				fmt.Fprintf(cmd.OutOrStdout(), "slotagent %s (%s)\n", version, runtime.Version())
			},
		},
	)
	return root
}

// Main runs the command line and returns the process exit code.
func Main(version string, args []string) int {
	root := New(version)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "slotagent:", err)
		return 1
	}
	return 0
}

// dataDir is the data dir a client command uses: --data-dir, then
// SLOTAGENT_DATA_DIR, then the default.
func dataDir(cmd *cobra.Command) string {
	if d, _ := cmd.Flags().GetString("data-dir"); d != "" {
		return d
	}
	if d := os.Getenv("SLOTAGENT_DATA_DIR"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, "data", "slotagent")
}

func runCmd(version string) *cobra.Command {
	var configFile string
	var detached bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent: admin panel, five slots, the Coder agent; rehydrate from the data dir",
		Long: "Run the agent. Settings come from flags, then the environment, then --config, then defaults:\n\n" + settingsTable() +
			"\nWith --detach it starts as a service in the background (its output in <data_dir>/logs/slotagent.log) and returns once it serves, or with the reason it does not; when the data dir's agent already runs for the same module instance, it says so and exits 0.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ready := detach.FromEnv()
			if configFile == "" {
				configFile = os.Getenv("SLOTAGENT_CONFIG")
			}
			cfg, err := config.Load(cmd.Flags(), configFile)
			if err != nil {
				ready.Report(err)
				return err
			}
			if detached {
				return runDetached(cfg, cmd.OutOrStdout())
			}
			return run(cfg, version, cmd.ErrOrStderr(), ready)
		},
	}
	cmd.Flags().String("bind", "", "address to listen on (env SLOTAGENT_BIND; default 127.0.0.1)")
	cmd.Flags().Int("admin-port", 0, "admin panel port (env ADMIN_PORT; default 9000)")
	cmd.Flags().StringVar(&configFile, "config", "", "YAML/JSON/TOML config file (env SLOTAGENT_CONFIG)")
	cmd.Flags().BoolVar(&detached, "detach", false, "start as a service in the background and return once it serves")
	return cmd
}

func settingsTable() string {
	var b strings.Builder
	for _, k := range config.Keys() {
		fmt.Fprintf(&b, "  %-26s %-30s %s (default %q)\n", k.Name, k.Env, k.Help, k.Default)
	}
	return b.String()
}

// run runs the agent until a signal stops it; ready, when the agent was
// started with --detach, is told how the start went.
func run(cfg *config.Config, version string, logOut io.Writer, ready *detach.Reporter) error {
	log := slog.New(slog.NewTextHandler(logOut, nil))
	sigs := make(chan os.Signal, 2)
	// SIGHUP too: a service has no terminal, so a hang-up is someone's
	// request to stop.
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	agent, err := daemon.Start(cfg, log, version)
	ready.Report(err)
	if err != nil {
		return err
	}
	log.Info("slotagent is up", "role", cfg.Role, "admin", fmt.Sprintf("http://%s:%d", cfg.Bind, cfg.AdminPort), "data_dir", cfg.DataDir)
	sig := <-sigs
	log.Info("shutting down", "signal", sig.String())
	if err := agent.Shutdown(); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped cleanly")
	return nil
}

// slotArgs takes min to max arguments, the first a slot's name
// (config.ValidSlot), which the commands put in an API path.
func slotArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.RangeArgs(min, max)(cmd, args); err != nil {
			return err
		}
		if !config.ValidSlot(args[0]) {
			return fmt.Errorf("unknown slot %q: slots are %s", args[0], strings.Join(config.SlotNames, ", "))
		}
		return nil
	}
}

func slotActionCmd(name, short, method, pathFormat string) *cobra.Command {
	return &cobra.Command{
		Use:   name + " SLOT",
		Short: short,
		Args:  slotArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res struct {
				Message string `json:"message"`
			}
			if err := newClient(dataDir(cmd)).call(method, fmt.Sprintf(pathFormat, args[0]), nil, &res); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.Message)
			return nil
		},
	}
}

func logsCmd() *cobra.Command {
	var follow bool
	var lines int
	cmd := &cobra.Command{
		Use:   "logs SLOT",
		Short: "Print a slot's log (stdout and stderr, timestamped); -f follows it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			path := fmt.Sprintf("/api/slots/%s/logs?n=%d", args[0], lines)
			if follow {
				path += "&follow=1"
			}
			resp, err := newClient(dataDir(cmd)).do(ctx, "GET", path, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, err = io.Copy(cmd.OutOrStdout(), resp.Body)
			if ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().IntVarP(&lines, "lines", "n", 100, "how many past lines to print")
	return cmd
}
