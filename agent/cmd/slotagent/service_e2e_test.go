package main

// End-to-end tests of slotagent as a service (`slotagent run --detach`), the
// way the coder-slots module's script starts it beside a Coder agent that
// someone else runs.

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/daemon"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/state"
	"golang.org/x/sys/unix"
)

// detached runs `slotagent run --detach` as a script runner would: its
// stdout and stderr are pipes, and it inherits one more pipe as fd 3 (a
// descriptor without close-on-exec). It returns the output and exit code,
// and fails the test unless every pipe reaches its end once the command
// has exited: the service must hold none of them.
func (a *agent) detached(extraEnv ...string) (string, string, int) {
	a.t.Helper()
	cmd := exec.Command(binary, "run", "--detach")
	cmd.Env = append(append([]string{}, a.env...), extraEnv...)
	var readers [3]*os.File
	var writers [3]*os.File
	for i := range readers {
		r, w, err := os.Pipe()
		if err != nil {
			a.t.Fatal(err)
		}
		readers[i], writers[i] = r, w
		defer r.Close()
	}
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = writers[0], writers[1], []*os.File{writers[2]}
	child, err := reaper.Start(cmd)
	for _, w := range writers {
		w.Close()
	}
	if err != nil {
		a.t.Fatal(err)
	}
	select {
	case <-child.Done():
	case <-time.After(3 * time.Minute):
		a.t.Fatal("slotagent run --detach did not return")
	}
	var out [3]string
	for i, r := range readers {
		if err := r.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			a.t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			a.t.Fatalf("pipe %d is still open after slotagent run --detach returned: the service inherited it (output so far %q)", i, b)
		}
		out[i] = string(b)
	}
	return out[0], out[1], child.Exit().Code
}

// about is the agent's /healthz.
func (a *agent) about() admin.About {
	a.t.Helper()
	code, b := body(a.t, a.url("admin", "/healthz"))
	var about admin.About
	if err := json.Unmarshal([]byte(b), &about); code != 200 || err != nil {
		a.t.Fatalf("/healthz: %d %v %s", code, err, b)
	}
	return about
}

// stopService sends sig to the service and waits for it to be gone.
func stopService(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(20 * time.Second); testkit.PIDAlive(pid); {
		if time.Now().After(end) {
			t.Fatalf("the service (pid %d) did not exit on %s", pid, sig)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (a *agent) serviceLog() string {
	b, _ := os.ReadFile(filepath.Join(a.dataDir, "logs", "slotagent.log"))
	return string(b)
}

func TestServiceStartsDetachedAndStopsCleanly(t *testing.T) {
	a := newAgent(t)
	writeState(t, a.dataDir)
	marker := filepath.Join(t.TempDir(), "coder-agent-ran")
	env := []string{"SLOTAGENT_INSTANCE=one", "CODER_AGENT_INIT_SCRIPT=touch " + marker + "; exec sleep 100"}
	out, errOut, code := a.detached(env...)
	if code != 0 || !strings.Contains(out, "slotagent started as a service (pid ") || errOut != "" {
		t.Fatalf("run --detach: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	about := a.about()
	t.Cleanup(func() {
		if testkit.PIDAlive(about.PID) {
			stopService(t, about.PID, syscall.SIGTERM)
		}
	})
	if about.Role != "service" || about.Instance != "one" || about.PID == 1 {
		t.Fatalf("/healthz: role %q, instance %q, pid %d", about.Role, about.Instance, about.PID)
	}
	if sid, err := unix.Getsid(about.PID); err != nil || sid != about.PID {
		t.Fatalf("the service is not the leader of a session of its own: sid %d, %v", sid, err)
	}
	if st, _, _ := a.cli("status"); !strings.Contains(st, "as a service") {
		t.Fatalf("status does not say the role:\n%s", st)
	}
	testkit.WaitHTTP(t, a.url("a", "/health"), 200, 20*time.Second)
	// A service leaves the Coder agent to the template.
	for _, p := range a.processes().Processes {
		if p.Name == "coder-agent" {
			t.Fatalf("the service runs the Coder agent: %+v", p)
		}
	}
	if !strings.Contains(a.serviceLog(), "not running the Coder agent") {
		t.Fatalf("the service's log does not say it left the Coder agent alone:\n%s", a.serviceLog())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("CODER_AGENT_INIT_SCRIPT ran")
	}

	// A re-run of the same module's script: fine. Another instance: not.
	if out, errOut, code := a.detached(env...); code != 0 || !strings.Contains(out, "slotagent is already running (pid "+strconv.Itoa(about.PID)+", service") {
		t.Fatalf("second run --detach: exit %d, %q %q", code, out, errOut)
	}
	_, errOut, code = a.detached("SLOTAGENT_INSTANCE=two")
	if code != 1 || !strings.Contains(errOut, "another coder-slots module instance already runs slotagent") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("another instance: exit %d, stderr %q", code, errOut)
	}

	// SIGHUP stops it cleanly; the next start brings the app back.
	_, appPID := body(t, a.url("a", "/pid"))
	stopService(t, about.PID, syscall.SIGHUP)
	if log := a.serviceLog(); !strings.Contains(log, "stopped cleanly") {
		t.Fatalf("no clean stop in the service's log:\n%s", log)
	}
	if pid, _ := strconv.Atoi(appPID); pid == 0 || testkit.PIDAlive(pid) {
		t.Fatalf("the app (pid %q) outlived the service", appPID)
	}
	saved, err := state.Load(filepath.Join(a.dataDir, "state.json"))
	if err != nil || len(saved.Groups) != 0 || saved.Slots["a"].Current != "r1" {
		t.Fatalf("state after the stop: %+v %v", saved, err)
	}
	if _, _, code := a.detached(env...); code != 0 {
		t.Fatal("restart failed")
	}
	testkit.WaitHTTP(t, a.url("a", "/health"), 200, 20*time.Second)
	about = a.about()
	if about.Role != "service" {
		t.Fatalf("after the restart: role %q", about.Role)
	}
	// What the module's stop script runs.
	if out, errOut, code := a.cli("shutdown"); code != 0 || out != "slotagent (pid "+strconv.Itoa(about.PID)+") stopped\n" {
		t.Fatalf("shutdown: exit %d, %q %q", code, out, errOut)
	}
	if testkit.PIDAlive(about.PID) || strings.Count(a.serviceLog(), "stopped cleanly") != 2 {
		t.Fatalf("shutdown did not stop the service cleanly:\n%s", a.serviceLog())
	}
	if out, _, code := a.cli("shutdown"); code != 0 || !strings.Contains(out, "no slotagent runs with data dir") {
		t.Fatalf("shutdown with nothing running: %d %q", code, out)
	}
}

// A service killed with SIGKILL leaves its apps running (they are in
// process groups of their own); the next start ends them before it binds.
func TestServiceRecoversFromSIGKILL(t *testing.T) {
	a := newAgent(t)
	writeState(t, a.dataDir)
	if _, errOut, code := a.detached(); code != 0 {
		t.Fatalf("run --detach: %d %s", code, errOut)
	}
	first := a.about()
	testkit.WaitHTTP(t, a.url("a", "/health"), 200, 20*time.Second)
	_, appPID := body(t, a.url("a", "/pid"))
	old, _ := strconv.Atoi(appPID)
	stopService(t, first.PID, syscall.SIGKILL)
	if !testkit.PIDAlive(old) {
		t.Fatal("the app died with the service: the recovery below proves nothing")
	}
	if _, errOut, code := a.detached(); code != 0 {
		t.Fatalf("run --detach after SIGKILL: %d %s", code, errOut)
	}
	second := a.about()
	t.Cleanup(func() { stopService(t, second.PID, syscall.SIGTERM) })
	if testkit.PIDAlive(old) {
		t.Fatalf("the old app (pid %d) still runs after the new start", old)
	}
	testkit.WaitHTTP(t, a.url("a", "/health"), 200, 20*time.Second)
	if _, pid := body(t, a.url("a", "/pid")); pid == appPID {
		t.Fatal("the app was not started again")
	}
}

// What stops a service from starting is one line on stderr, and nothing is
// left running or listening.
func TestServiceRefusesWithOneLine(t *testing.T) {
	// The user's own process on the admin port.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	a := newAgent(t)
	_, errOut, code := a.detached("ADMIN_PORT=" + strconv.Itoa(taken.Addr().(*net.TCPAddr).Port))
	if code != 1 || !strings.Contains(errOut, "address already in use") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("admin port taken: exit %d, stderr %q", code, errOut)
	}
	lock, err := daemon.LockDataDir(a.dataDir)
	if err != nil {
		t.Fatalf("a half-started service holds the data dir: %v", err)
	}
	lock.Close()
	if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(a.ports["a"])); err == nil {
		c.Close()
		t.Fatal("slot a's port answers after the failed start")
	}

	// A data dir that cannot be made.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = a.detached("SLOTAGENT_DATA_DIR=" + filepath.Join(file, "data"))
	if code != 1 || !strings.Contains(errOut, "cannot be created") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("data dir: exit %d, stderr %q", code, errOut)
	}
}
