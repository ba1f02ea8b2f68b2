package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

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
