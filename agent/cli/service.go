package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/daemon"
	"github.com/coder-slots/coder-slots/agent/detach"
)

// ServiceLog is the service's own log file in the log dir.
const ServiceLog = "slotagent.log"

// Bounds of runDetached's waits: for the service to report its start, and
// for an agent that holds the data dir's lock to answer.
const (
	startTimeout  = 2 * time.Minute
	answerTimeout = 30 * time.Second
	// shutdownWait bounds `slotagent shutdown`, beyond the agent's own
	// shutdown_timeout (8 s by default).
	shutdownWait = 2 * time.Minute
)

// runDetached is `slotagent run --detach`: unless the data dir's agent
// already runs, start this same command line without --detach as a
// service, and report how its start went.
func runDetached(cfg *config.Config, out io.Writer) error {
	lock, err := daemon.LockDataDir(cfg.DataDir)
	if errors.Is(err, daemon.ErrLocked) {
		return alreadyRunning(cfg, out)
	}
	if err != nil {
		return err
	}
	// The service takes the lock itself; a second starter meanwhile
	// finds it taken and asks the service.
	lock.Close()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	args := slices.DeleteFunc(slices.Clone(os.Args[1:]), func(a string) bool { return a == "--detach" || a == "--detach=true" })
	logPath := filepath.Join(cfg.LogDir(), ServiceLog)
	if err := os.MkdirAll(cfg.LogDir(), 0o700); err != nil {
		return fmt.Errorf("create log dir: %w", err)
	}
	env := append(os.Environ(), "SLOTAGENT_ROLE="+config.RoleService)
	pid, err := detach.Start(exe, args, env, logPath, startTimeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "slotagent started as a service (pid %d, data dir %s); its log: %s\n", pid, cfg.DataDir, logPath)
	return nil
}

// alreadyRunning answers for the agent that holds the data dir's lock: a
// re-run for the same module instance is fine, another instance is not.
func alreadyRunning(cfg *config.Config, out io.Writer) error {
	c := newClient(cfg.DataDir)
	var about admin.About
	deadline := time.Now().Add(answerTimeout)
	for {
		err := c.call("GET", "/healthz", nil, &about)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("another slotagent holds the lock of data dir %s but does not answer on its control socket: %v", cfg.DataDir, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if about.Instance != cfg.Instance {
		return fmt.Errorf("another coder-slots module instance already runs slotagent with data dir %s (pid %d, admin port %d): one instance per workspace; remove the second module block or give it its own data_dir and ports",
			cfg.DataDir, about.PID, about.AdminPort)
	}
	fmt.Fprintf(out, "slotagent is already running (pid %d, %s, data dir %s)\n", about.PID, about.Role, cfg.DataDir)
	return nil
}

func shutdownCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "shutdown",
		Short: "Stop the data dir's agent when it runs as a service (SIGTERM, then wait until it has stopped cleanly)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return shutdown(dataDir(cmd), cmd.OutOrStdout())
		},
	}
}

// shutdown sends the data dir's service SIGTERM and waits for it to let go
// of the data dir's lock, which it does once its orderly shutdown is done.
func shutdown(dir string, out io.Writer) error {
	lock, err := daemon.LockDataDir(dir)
	if err == nil {
		lock.Close()
		fmt.Fprintf(out, "no slotagent runs with data dir %s\n", dir)
		return nil
	}
	if !errors.Is(err, daemon.ErrLocked) {
		return err
	}
	var about admin.About
	if err := newClient(dir).call("GET", "/healthz", nil, &about); err != nil {
		return fmt.Errorf("the agent of data dir %s does not answer: %w", dir, err)
	}
	if about.Role != config.RoleService {
		return fmt.Errorf("slotagent (pid %d) is the container's entrypoint: stop the workspace instead", about.PID)
	}
	if err := syscall.Kill(about.PID, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop slotagent (pid %d): %w", about.PID, err)
	}
	deadline := time.Now().Add(shutdownWait)
	for {
		lock, err := daemon.LockDataDir(dir)
		if err == nil {
			lock.Close()
			fmt.Fprintf(out, "slotagent (pid %d) stopped\n", about.PID)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("slotagent (pid %d) did not stop within %s", about.PID, shutdownWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
