package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/procgroup"
)

// moduleDir is the root of the enclosing Go module (the coder-slots
// source tree): where slotagent is built from and the sample app's
// package.json and lockfile are read.
func moduleDir(ctx context.Context) (string, error) {
	gomod, err := output(ctx, "go", "env", "GOMOD")
	if err != nil {
		return "", fmt.Errorf("find the module: %w", err)
	}
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find the module: run slotbench inside the coder-slots module")
	}
	return filepath.Dir(gomod), nil
}

// buildAgent compiles ./agent/cmd/slotagent of the module in modDir into
// dir and returns the binary's path.
func buildAgent(ctx context.Context, modDir, dir string) (string, error) {
	version := "dev"
	if v, err := outputIn(ctx, modDir, "git", "describe", "--always", "--dirty"); err == nil && v != "" {
		version = v
	}
	bin := filepath.Join(dir, "slotagent")
	if _, err := outputIn(ctx, modDir, "go", "build", "-ldflags", "-X main.version="+version,
		"-o", bin, "./agent/cmd/slotagent"); err != nil {
		return "", fmt.Errorf("build slotagent: %w", err)
	}
	return bin, nil
}

// outputIn is output with the working directory set to dir.
func outputIn(ctx context.Context, dir, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// agentProc is one `slotagent run` with its own data dir and free ports.
type agentProc struct {
	bin     string
	dataDir string
	env     []string
	ports   map[string]int // "admin", "a"…"e"
	stderr  string         // file receiving the agent's log
	cmd     *exec.Cmd
	exited  chan struct{}
}

// newAgent prepares (does not start) an agent whose files live under a new
// directory in b.root.
func (b *bench) newAgent() (*agentProc, error) {
	dir, err := os.MkdirTemp(b.root, "agent-")
	if err != nil {
		return nil, fmt.Errorf("create agent directory: %w", err)
	}
	a := &agentProc{
		bin:     b.bin,
		dataDir: filepath.Join(dir, "data"),
		stderr:  filepath.Join(dir, "agent.log"),
		ports:   map[string]int{},
	}
	if err := os.Mkdir(a.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	for _, name := range append([]string{"admin"}, config.SlotNames...) {
		if a.ports[name], err = testkit.FreePortErr(); err != nil {
			return nil, err
		}
	}
	a.env = append(cleanEnv(),
		"SLOTAGENT_DATA_DIR="+a.dataDir,
		"SLOTAGENT_BIND=127.0.0.1",
		"SLOTAGENT_KILL_TIMEOUT=3s",
		"SLOTAGENT_POSTGRES_ENABLED=false", // the rows with PostgreSQL switch it on (postgres.go)
		"ADMIN_PORT="+strconv.Itoa(a.ports["admin"]),
		"ADMIN_URL=https://admin--bench--me.example.com",
	)
	for _, s := range config.SlotNames {
		up := strings.ToUpper(s)
		a.env = append(a.env,
			"SLOT_"+up+"_PORT="+strconv.Itoa(a.ports[s]),
			"SLOT_"+up+"_URL=https://slot-"+s+"--bench--me.example.com")
	}
	return a, nil
}

// cleanEnv is this process's environment without anything that configures
// slotagent, so only the benchmark's settings apply.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SLOTAGENT_") || strings.HasPrefix(k, "SLOT_") ||
			strings.HasPrefix(k, "ADMIN_") || strings.HasPrefix(k, "CODER_AGENT_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// url is the loopback URL of path on the named port ("admin", "a"…"e").
func (a *agentProc) url(port, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", a.ports[port], path)
}

// start execs `slotagent run` and returns at once; stop must follow.
func (a *agentProc) start() error {
	f, err := os.OpenFile(a.stderr, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open agent log: %w", err)
	}
	defer f.Close()
	cmd := exec.Command(a.bin, "run")
	cmd.Env = a.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start slotagent run: %w", err)
	}
	a.cmd, a.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(a.exited) }()
	return nil
}

// startReady starts the agent and waits until its admin API answers.
func (a *agentProc) startReady() error {
	if err := a.start(); err != nil {
		return err
	}
	if _, err := testkit.WaitHTTPErr(a.url("admin", "/healthz"), 200, 10*time.Second); err != nil {
		return fmt.Errorf("slotagent did not come up: %w%s", err, a.logTail())
	}
	return nil
}

// pid is the agent's PID, 0 before start.
func (a *agentProc) pid() int {
	if a.cmd == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

// stop ends the agent with SIGTERM (SIGKILL after 10 s), then kills
// whatever it started that is still alive. It is safe to call twice.
func (a *agentProc) stop() error {
	if a.cmd == nil {
		return nil
	}
	var left []procgroup.Identity
	for _, pid := range procgroup.Descendants(a.pid()) {
		if id, err := procgroup.Lookup(pid); err == nil {
			left = append(left, id)
		}
	}
	var err error
	select {
	case <-a.exited:
	default:
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
		case <-time.After(10 * time.Second):
			_ = a.cmd.Process.Kill()
			<-a.exited
			err = fmt.Errorf("slotagent did not stop within 10 s of SIGTERM; killed")
		}
	}
	for _, id := range left {
		if id.Alive() {
			_ = syscall.Kill(id.PID, syscall.SIGKILL)
		}
	}
	a.cmd = nil
	return err
}

// cli runs a client command against the agent and returns its standard
// output; a non-zero exit is an error carrying its standard error.
func (a *agentProc) cli(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, a.bin, args...)
	cmd.Env = a.env
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("slotagent %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// logTail is the end of the agent's log, for error messages.
func (a *agentProc) logTail() string {
	b, err := os.ReadFile(a.stderr)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\nagent log (tail):\n" + string(b)
}
