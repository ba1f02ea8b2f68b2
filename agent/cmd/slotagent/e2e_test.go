package main

// End-to-end tests of the slotagent binary: real processes, real signals,
// real sockets. The binary is built once by TestMain.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/state"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "slotagent-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "slotagent")
	if err := reaper.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := reaper.Output(context.Background(), exec.Command("go", "build", "-o", binary, "."))
	if err != nil {
		fmt.Fprintf(os.Stderr, "build slotagent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agent is one slotagent run in a test.
type agent struct {
	t       *testing.T
	dataDir string
	env     []string
	ports   map[string]int // "admin", "a"…"e"
	child   *reaper.Child
	logFile string // the agent's stderr
}

// newAgent prepares an agent with its own data dir and free ports.
func newAgent(t *testing.T) *agent {
	a := &agent{t: t, dataDir: t.TempDir(), ports: map[string]int{}}
	a.ports["admin"] = testkit.FreePort(t)
	a.env = append(os.Environ(), "SLOTAGENT_DATA_DIR="+a.dataDir, "ADMIN_PORT="+strconv.Itoa(a.ports["admin"]),
		"SLOTAGENT_KILL_TIMEOUT=3s", "ADMIN_URL=https://admin--dev--alice.example.com",
		"SLOTAGENT_POSTGRES_ENABLED=false") // postgres_e2e_test.go switches it on
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		a.ports[s] = testkit.FreePort(t)
		up := strings.ToUpper(s)
		a.env = append(a.env, "SLOT_"+up+"_PORT="+strconv.Itoa(a.ports[s]), "SLOT_"+up+"_URL=https://slot-"+s+"--dev--alice.example.com")
	}
	t.Cleanup(func() {
		if a.child != nil {
			_ = syscall.Kill(a.child.Pid, syscall.SIGTERM)
			a.wait(15 * time.Second)
		}
	})
	return a
}

func (a *agent) url(slot, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", a.ports[slot], path)
}

// start runs `slotagent run` and waits until the admin API answers.
func (a *agent) start(extraEnv ...string) {
	a.t.Helper()
	a.launch(exec.Command(binary, "run"), extraEnv...)
	testkit.WaitHTTP(a.t, a.url("admin", "/healthz"), 200, 10*time.Second)
}

// launch starts cmd (the agent, or a wrapper of it) with the agent's env
// and its stderr in a file.
func (a *agent) launch(cmd *exec.Cmd, extraEnv ...string) {
	a.t.Helper()
	cmd.Env = append(append([]string{}, a.env...), extraEnv...)
	f, err := os.CreateTemp(a.t.TempDir(), "agent-stderr")
	if err != nil {
		a.t.Fatal(err)
	}
	defer f.Close()
	a.logFile, cmd.Stderr = f.Name(), f
	if a.child, err = reaper.Start(cmd); err != nil {
		a.t.Fatal(err)
	}
}

// signal sends sig to the agent.
func (a *agent) signal(sig syscall.Signal) {
	a.t.Helper()
	if err := syscall.Kill(a.child.Pid, sig); err != nil {
		a.t.Fatal(err)
	}
}

// exitCode is the exit code of the agent, which has exited.
func (a *agent) exitCode() int { return a.child.Exit().Code }

// stderr is what the agent has logged so far.
func (a *agent) stderr() string {
	b, _ := os.ReadFile(a.logFile)
	return string(b)
}

// wait waits for the agent to exit and returns how long it took.
func (a *agent) wait(timeout time.Duration) time.Duration {
	start := time.Now()
	select {
	case <-a.child.Done():
	case <-time.After(timeout):
		a.t.Fatalf("agent did not exit within %s\n%s", timeout, a.stderr())
	}
	return time.Since(start)
}

// cli runs a client command and returns its stdout, stderr and exit code.
func (a *agent) cli(args ...string) (string, string, int) {
	a.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = a.env
	var out, errOut bytes.Buffer
	err := reaper.RunTo(context.Background(), cmd, &out, &errOut)
	code := 0
	var ee *reaper.ExitError
	if errors.As(err, &ee) {
		code = ee.Exit.Code
	} else if err != nil {
		a.t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// runFails runs `slotagent run` (or args) with env, expecting it to stop at
// once, and returns its output (stderr then stdout) and whether it failed.
func runFails(t *testing.T, env []string, args ...string) (string, bool) {
	t.Helper()
	if len(args) == 0 {
		args = []string{"run"}
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := reaper.RunTo(ctx, cmd, &out, &errOut)
	return errOut.String() + out.String(), err != nil
}

func (a *agent) processes() admin.ProcessList {
	a.t.Helper()
	out, errOut, code := a.cli("status", "--json")
	if code != 0 {
		a.t.Fatalf("status --json: %d %s", code, errOut)
	}
	var list admin.ProcessList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		a.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return list
}

func body(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// writeState gives slot a the hello app as its current release, as a
// deploy would have left it.
func writeState(t *testing.T, dataDir string) string {
	t.Helper()
	testkit.NeedNode(t)
	dir := testkit.WriteApp(t, testkit.HelloApp)
	st := state.New()
	st.Slots["a"] = &state.Slot{
		Desired: state.DesiredRunning, Current: "r1",
		Releases: []state.Release{{ID: "r1", Dir: dir, Command: "node server.js", CreatedAt: time.Now().UTC()}},
		Env:      map[string]string{"VERSION": "v1", "API_TOKEN": "tok-123456"},
	}
	if err := state.Save(filepath.Join(dataDir, "state.json"), st); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFirstBootStatusValidateAndCleanStop(t *testing.T) {
	a := newAgent(t)
	a.start()
	list := a.processes()
	if list.Total != 6 || list.Online != 6 {
		t.Fatalf("status: %d of %d online: %+v", list.Online, list.Total, list)
	}
	for _, p := range list.Processes[1:] {
		if p.Type != "placeholder" || !strings.HasPrefix(p.URL, "https://slot-") {
			t.Fatalf("row %+v", p)
		}
	}
	out, _, code := a.cli("status")
	if code != 0 || !strings.Contains(out, "slot-c") || !strings.Contains(out, "6 of 6 online") {
		t.Fatalf("status table:\n%s", out)
	}
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		code, b := body(t, a.url(s, "/"))
		if code != 200 || !strings.Contains(b, "https://slot-"+s+"--dev--alice.example.com") || !strings.Contains(b, "admin--dev--alice") {
			t.Fatalf("placeholder %s: %d %s", s, code, b)
		}
		if code, _ := body(t, a.url("admin", "/api/slots/"+s+"/health")); code != 200 {
			t.Fatalf("health of %s: %d", s, code)
		}
	}
	if code, b := body(t, a.url("admin", "/api/slots/zz/health")); code != 404 || !strings.Contains(b, `unknown slot \"zz\"`) {
		t.Fatalf("unknown slot: %d %s", code, b)
	}
	out, _, code = a.cli("validate")
	if code != 0 || !strings.Contains(out, "all 16 checks passed") {
		t.Fatalf("validate: %d\n%s", code, out)
	}
	if _, errOut, code := a.cli("stop", "x"); code != 1 || !strings.Contains(errOut, `unknown slot "x"`) {
		t.Fatalf("stop x: %d %s", code, errOut)
	}
	fi, err := os.Stat(filepath.Join(a.dataDir, "slotagent.sock"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", fi, err)
	}
	fi, err = os.Stat(filepath.Join(a.dataDir, "state.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}
	a.signal(syscall.SIGTERM)
	if d := a.wait(10 * time.Second); d > 3*time.Second {
		t.Fatalf("shutdown took %s", d)
	}
	if a.exitCode() != 0 {
		t.Fatalf("exit code %d\n%s", a.exitCode(), a.stderr())
	}
	for _, p := range []string{"admin", "a", "e"} {
		if !testkit.PortFree(a.ports[p]) {
			t.Fatalf("port of %s still taken after shutdown", p)
		}
	}
	_, errOut, code := a.cli("status")
	if code != 1 || !strings.Contains(errOut, "no agent is running") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("status with no agent: %d %q", code, errOut)
	}
}

func TestBadConfigStopsTheStartWithOneLine(t *testing.T) {
	cases := []struct{ env, want string }{
		{"ADMIN_PORT=abc", "ADMIN_PORT"},
		{"SLOT_C_PORT=70000", "SLOT_C_PORT"},
		{"SLOTAGENT_BIND=nowhere", "SLOTAGENT_BIND"},
	}
	for _, c := range cases {
		a := newAgent(t)
		out, failed := runFails(t, append(a.env, c.env))
		if !failed || !strings.Contains(out, c.want) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("%s: failed=%v output=%q", c.env, failed, out)
		}
	}
	// A slot port that is taken.
	a := newAgent(t)
	busy, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", a.ports["b"]))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	out, failed := runFails(t, a.env)
	if !failed || !strings.Contains(out, "SLOT_B_PORT") || !strings.Contains(out, "address already in use") {
		t.Fatalf("busy port: %v %q", failed, out)
	}
}

func TestRehydrateAfterKill9(t *testing.T) {
	a := newAgent(t)
	writeState(t, a.dataDir)
	a.start()
	testkit.WaitHTTP(t, a.url("a", "/health"), 200, 10*time.Second)
	if _, b := body(t, a.url("a", "/")); b != "hello from a v1" {
		t.Fatalf("app: %q", b)
	}
	_, pidText := body(t, a.url("a", "/pid"))
	oldPID, _ := strconv.Atoi(pidText)
	if oldPID == 0 {
		t.Fatalf("pid %q", pidText)
	}

	// An unclean stop leaves the app running, holding its port.
	a.signal(syscall.SIGKILL)
	a.wait(5 * time.Second)
	if !testkit.PIDAlive(oldPID) {
		t.Fatal("the app died with the agent; the test cannot show the cleanup")
	}

	a.start()
	if testkit.PIDAlive(oldPID) {
		t.Fatalf("the old app (pid %d) survived the new agent's start", oldPID)
	}
	testkit.WaitHTTP(t, a.url("a", "/health"), 200, 10*time.Second)
	_, pidText = body(t, a.url("a", "/pid"))
	if newPID, _ := strconv.Atoi(pidText); newPID == 0 || newPID == oldPID {
		t.Fatalf("app pid after rehydrate %q (old %d)", pidText, oldPID)
	}
	if !strings.Contains(a.stderr(), "killing process group left by an earlier agent") {
		t.Fatalf("no cleanup logged:\n%s", a.stderr())
	}
	list := a.processes()
	if list.Online != 6 || list.Processes[1].Type != "app" || list.Processes[1].Release != "r1" {
		t.Fatalf("after rehydrate: %+v", list)
	}
}

func TestStopRestartLogsAndConfig(t *testing.T) {
	a := newAgent(t)
	writeState(t, a.dataDir)
	a.start()
	testkit.WaitHTTP(t, a.url("a", "/health"), 200, 10*time.Second)

	out, _, code := a.cli("config", "--format", "ecosystem")
	if code != 0 || !strings.Contains(out, "module.exports = {") || !strings.Contains(out, `"name": "slot-a"`) ||
		!strings.Contains(out, `"API_TOKEN": "********"`) || strings.Contains(out, "tok-123456") {
		t.Fatalf("config --format ecosystem:\n%s", out)
	}
	if _, errOut, code := a.cli("config", "--format", "yaml"); code != 1 || !strings.Contains(errOut, "json or ecosystem") {
		t.Fatalf("bad format: %d %s", code, errOut)
	}

	if out, _, code = a.cli("status", "--metadata", "a"); code != 0 || !strings.HasPrefix(out, "online · r1 · up ") {
		t.Fatalf("status --metadata a: %d %q", code, out)
	}
	if out, _, code = a.cli("status", "--metadata", "b"); code != 0 || out != "placeholder\n" {
		t.Fatalf("status --metadata b: %d %q", code, out)
	}
	if _, errOut, code := a.cli("status", "--metadata", "q"); code != 1 || !strings.Contains(errOut, `unknown slot "q"`) {
		t.Fatalf("status --metadata q: %d %q", code, errOut)
	}
	if out, _, code = a.cli("stop", "a"); code != 0 {
		t.Fatalf("stop a: %d %s", code, out)
	}
	if _, b := body(t, a.url("a", "/")); !strings.Contains(b, "ready for deployment") {
		t.Fatalf("after stop: %q", b)
	}
	st, err := state.Load(filepath.Join(a.dataDir, "state.json"))
	if err != nil || st.Slots["a"].Desired != state.DesiredPlaceholder || st.Slots["a"].Current != "r1" {
		t.Fatalf("state after stop: %+v %v", st.Slots["a"], err)
	}
	if out, _, code = a.cli("restart", "a"); code != 0 || !strings.Contains(out, "started release r1") {
		t.Fatalf("restart a: %d %s", code, out)
	}
	testkit.WaitHTTP(t, a.url("a", "/health"), 200, 10*time.Second)
	if out, _, code = a.cli("restart", "b"); code != 0 || !strings.Contains(out, "nothing to restart") {
		t.Fatalf("restart b: %d %s", code, out)
	}

	// The restart notes went to the slot's log; follow sees new lines: the
	// follower shows one old line, and the new ones come after it.
	logs := exec.Command(binary, "logs", "a", "-f", "-n", "1")
	logs.Env = a.env
	logOut, err := os.Create(filepath.Join(t.TempDir(), "follow.out"))
	if err != nil {
		t.Fatal(err)
	}
	logs.Stdout = logOut
	followed := func() []string {
		b, _ := os.ReadFile(logOut.Name())
		return strings.SplitAfter(string(b), "\n")
	}
	follower, err := reaper.Start(logs)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(follower.Pid, syscall.SIGKILL); <-follower.Done() }()
	// Once the old line is out, the follower is subscribed.
	for deadline := time.Now().Add(5 * time.Second); len(followed()) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("logs -f showed no line: %q", followed())
		}
	}
	if out, _, code = a.cli("restart", "a"); code != 0 {
		t.Fatalf("restart a: %d %s", code, out)
	}
	newListen := func() bool { return strings.Contains(strings.Join(followed()[1:], ""), "listening on") }
	for deadline := time.Now().Add(5 * time.Second); !newListen(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("logs -f saw no new line:\n%s", strings.Join(followed(), ""))
		}
	}
	out, _, code = a.cli("logs", "a", "-n", "1")
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, "listening on") {
		t.Fatalf("logs -n 1: %d %q", code, out)
	}
	if _, errOut, code := a.cli("logs", "nope"); code != 1 || !strings.Contains(errOut, "unknown slot or process") {
		t.Fatalf("logs nope: %d %s", code, errOut)
	}
}

func TestCoderAgentIsSupervisedAndRestartedAlways(t *testing.T) {
	a := newAgent(t)
	marker := filepath.Join(t.TempDir(), "starts")
	// Not PID 1 here: the role is said explicitly.
	a.start("SLOTAGENT_ROLE=entrypoint", "CODER_AGENT_INIT_SCRIPT=echo start >> "+marker+"; echo token=$CODER_AGENT_TOKEN; exec sleep 100", "CODER_AGENT_TOKEN=tok")
	starts := func() int {
		b, _ := os.ReadFile(marker)
		return strings.Count(string(b), "start")
	}
	// Online is said when the process is spawned; the script runs once the
	// agent has recorded its group, so wait for its first line too: a kill
	// before it would leave one start in all.
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for (pid == 0 || starts() < 1) && time.Now().Before(deadline) {
		for _, p := range a.processes().Processes {
			if p.Name == "coder-agent" && p.Status == "online" {
				pid = p.PID
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if pid == 0 || starts() < 1 {
		t.Fatalf("coder-agent never came online (pid %d, %d starts)", pid, starts())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if starts() >= 2 {
			return
		}
	}
	t.Fatal("coder-agent was not restarted after it was killed")
}

func TestOneAgentPerDataDir(t *testing.T) {
	a := newAgent(t)
	a.start()
	b := newAgent(t)
	out, failed := runFails(t, append(b.env, "SLOTAGENT_DATA_DIR="+a.dataDir))
	if !failed || !strings.Contains(out, "another slotagent is already running") {
		t.Fatalf("second agent: %v %s", failed, out)
	}
	if code, _ := body(t, a.url("admin", "/healthz")); code != 200 {
		t.Fatal("the first agent was disturbed")
	}
}

// TestShutdownFitsDockerStopTimeout: an app that ignores SIGTERM, with a
// kill timeout longer than Docker's 10 s, still lets the agent exit 0 in time.
func TestShutdownFitsDockerStopTimeout(t *testing.T) {
	testkit.NeedNode(t)
	a := newAgent(t)
	dir := testkit.WriteApp(t, `process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
require('http').createServer((q, s) => s.end('stubborn')).listen(Number(process.env.PORT), '127.0.0.1');`)
	st := state.New()
	st.Slots["b"] = &state.Slot{Desired: state.DesiredRunning, Current: "r1",
		Releases: []state.Release{{ID: "r1", Dir: dir, Command: "node server.js"}}}
	if err := state.Save(filepath.Join(a.dataDir, "state.json"), st); err != nil {
		t.Fatal(err)
	}
	a.start("SLOTAGENT_KILL_TIMEOUT=30s")
	testkit.WaitHTTP(t, a.url("b", "/"), 200, 10*time.Second)
	a.signal(syscall.SIGTERM)
	d := a.wait(15 * time.Second)
	if code := a.exitCode(); code != 0 || d > 9*time.Second {
		t.Fatalf("shutdown: exit %d after %s\n%s", code, d, a.stderr())
	}
	saved, err := state.Load(filepath.Join(a.dataDir, "state.json"))
	if err != nil || saved.Slots["b"].Desired != state.DesiredRunning || len(saved.Groups) != 0 {
		t.Fatalf("state after shutdown: %+v %v", saved, err)
	}
	t.Logf("shutdown with a SIGTERM-ignoring app took %s", d)
}

// TestAgentAsPID1 runs the agent as PID 1 of a new PID namespace, as in a
// container, and stops it with SIGTERM as `docker stop` does.
func TestAgentAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unshare --pid needs root")
	}
	a := newAgent(t)
	writeState(t, a.dataDir)
	a.launch(exec.Command("unshare", "--pid", "--fork", "--mount-proc", binary, "run"))
	testkit.WaitHTTP(t, a.url("a", "/health"), 200, 10*time.Second)
	if _, pid := body(t, a.url("a", "/pid")); pid == "" || pid == "1" {
		t.Fatalf("app pid in the namespace: %q", pid)
	}
	if _, about := body(t, a.url("admin", "/healthz")); !strings.Contains(about, `"pid": 1,`) || !strings.Contains(about, `"role": "entrypoint",`) {
		t.Fatalf("agent is not PID 1 in the entrypoint role: %s", about)
	}
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", a.child.Pid, a.child.Pid))
	if err != nil {
		t.Fatal(err)
	}
	pid1, err := strconv.Atoi(strings.TrimSpace(string(children)))
	if err != nil {
		t.Fatalf("children of unshare: %q", children)
	}
	if err := syscall.Kill(pid1, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if d := a.wait(10 * time.Second); d > 5*time.Second {
		t.Fatalf("PID 1 shutdown took %s", d)
	}
	if code := a.exitCode(); code != 0 {
		t.Fatalf("exit %d\n%s", code, a.stderr())
	}
	if !strings.Contains(a.stderr(), "stopped cleanly") {
		t.Fatalf("no clean stop:\n%s", a.stderr())
	}
}

// TestAdminPortRefusesCrossOriginChanges: a page on a sibling origin cannot
// drive the agent through the user's browser; the CLI's socket can.
func TestAdminPortRefusesCrossOriginChanges(t *testing.T) {
	a := newAgent(t)
	a.start()
	for name, hdr := range map[string][2]string{
		"sec-fetch-site": {"Sec-Fetch-Site", "cross-site"},
		"origin":         {"Origin", "https://slot-a--dev--alice.example.com"},
	} {
		req, _ := http.NewRequest("POST", a.url("admin", "/api/processes/a/stop"), nil)
		req.Header.Set(hdr[0], hdr[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "cross-origin") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b)
		}
	}
	req, _ := http.NewRequest("POST", a.url("admin", "/api/restart/a"), strings.NewReader("x=1"))
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("same-origin form post: %d, want 415", resp.StatusCode)
	}
	req, _ = http.NewRequest("POST", a.url("admin", "/api/restart/a"), strings.NewReader("{}"))
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("same-origin restart: %d", resp.StatusCode)
	}
	if code, _ := body(t, a.url("admin", "/api/nothing")); code != 404 {
		t.Fatalf("unknown endpoint: %d", code)
	}
}

// TestBrokenReleasesFallBackToThePlaceholder: a release gone from disk and a
// release that crash-loops leave the agent up, each slot on its placeholder
// with the reason visible, the state unchanged, and validate names them.
func TestBrokenReleasesFallBackToThePlaceholder(t *testing.T) {
	a := newAgent(t)
	st := state.New()
	st.Slots["a"] = &state.Slot{Desired: state.DesiredRunning, Current: "gone",
		Releases: []state.Release{{ID: "gone", Dir: filepath.Join(t.TempDir(), "deleted"), Command: "node server.js"}}}
	st.Slots["c"] = &state.Slot{Desired: state.DesiredRunning, Current: "crash",
		Releases: []state.Release{{ID: "crash", Dir: t.TempDir(), Command: "echo boom >&2; exit 2"}}}
	if err := state.Save(filepath.Join(a.dataDir, "state.json"), st); err != nil {
		t.Fatal(err)
	}
	a.start("SLOTAGENT_MAX_RESTARTS=3", "SLOTAGENT_MIN_UPTIME=500ms")

	code, page := body(t, a.url("a", "/"))
	if code != 200 || !strings.Contains(page, "ready for deployment") || !strings.Contains(page, "release gone could not be started") {
		t.Fatalf("slot a: %d %s", code, page)
	}
	// The crash-looping release is given its restarts, then retired.
	deadline := time.Now().Add(15 * time.Second)
	var row admin.ProcessRow
	for time.Now().Before(deadline) {
		row = a.processes().Processes[3]
		if row.Type == "placeholder" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if row.Name != "slot-c" || row.Type != "placeholder" || !strings.Contains(row.Error, "release crash could not be started") ||
		!strings.Contains(row.Error, "exited") {
		t.Fatalf("slot c: %+v", row)
	}
	if code, page := body(t, a.url("c", "/")); code != 200 || !strings.Contains(page, "release crash could not be started") {
		t.Fatalf("slot c does not show its placeholder with the reason: %d %s", code, page)
	}
	st, err := state.Load(filepath.Join(a.dataDir, "state.json"))
	if err != nil || st.Slots["c"].Current != "crash" || st.Slots["c"].Desired != state.DesiredRunning {
		t.Fatalf("the state forgot what slot c should run: %+v %v", st.Slots["c"], err)
	}
	out, errOut, code := a.cli("validate")
	if code != 1 || !strings.Contains(out, "FAIL  process slot-c online: placeholder instead of its app: release crash could not be started") ||
		!strings.Contains(out, "FAIL  process slot-a online: placeholder instead of its app") || !strings.Contains(errOut, "checks failed") {
		t.Fatalf("validate: %d\n%s%s", code, out, errOut)
	}
	logs, _, _ := a.cli("logs", "c")
	if !strings.Contains(logs, "boom") || !strings.Contains(logs, "errored") {
		t.Fatalf("slot c log:\n%s", logs)
	}
}

// TestUnusableStateFileIsMovedAside: the agent still comes up (it is the
// container's entrypoint), keeps the old file, and says what happened.
func TestUnusableStateFileIsMovedAside(t *testing.T) {
	a := newAgent(t)
	path := filepath.Join(a.dataDir, "state.json")
	if err := os.WriteFile(path, []byte(`{"version": 1, "slots": {"a": {"desired": "runn`), 0o600); err != nil {
		t.Fatal(err)
	}
	// A release folder the lost state knew: it must survive the start.
	release := filepath.Join(a.dataDir, "slots", "a", "releases", "20261125T000000000-abc1234")
	if err := os.MkdirAll(release, 0o700); err != nil {
		t.Fatal(err)
	}
	a.start()
	if _, err := os.Stat(release); err != nil {
		t.Fatalf("a release folder was deleted after the state was moved aside: %v", err)
	}
	aside, _ := filepath.Glob(path + ".broken-*")
	if len(aside) != 1 {
		t.Fatalf("moved-aside files: %v", aside)
	}
	if b, _ := os.ReadFile(aside[0]); !strings.Contains(string(b), `"runn`) {
		t.Fatalf("the old file's content was not kept: %q", b)
	}
	out, _, code := a.cli("validate")
	if code != 1 || !strings.Contains(out, "FAIL  no problems at start: state file was unusable and was moved to") {
		t.Fatalf("validate: %d\n%s", code, out)
	}
	if list := a.processes(); list.Online != 6 {
		t.Fatalf("agent not fully up: %+v", list)
	}
	var about admin.About
	a.apiJSON("/healthz", &about)
	if about.Status != "degraded" || len(about.Warnings) != 1 {
		t.Fatalf("/healthz after a start with a warning: %+v", about)
	}
}

// TestPlaceholderAlone: `slotagent placeholder` serves the in-process
// placeholder's page and /health; bad input is one clear line.
func TestPlaceholderAlone(t *testing.T) {
	port := testkit.FreePort(t)
	cmd := exec.Command(binary, "placeholder", "c", "--port", strconv.Itoa(port))
	cmd.Env = append(os.Environ(), "SLOT_C_URL=https://slot-c--dev--alice.example.com", "ADMIN_URL=https://admin--dev--alice.example.com")
	child, err := reaper.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	testkit.WaitHTTP(t, url+"/health", 200, 10*time.Second)
	if _, b := body(t, url+"/health"); b != `{"slot":"c","status":"healthy","type":"placeholder"}`+"\n" {
		t.Errorf("/health: %q", b)
	}
	if code, b := body(t, url+"/"); code != 200 || !strings.Contains(b, "https://slot-c--dev--alice.example.com") || !strings.Contains(b, "admin--dev--alice") {
		t.Errorf("page: %d %s", code, b)
	}
	for _, args := range [][]string{{"z", "--port", "3001"}, {"a"}, {"a", "--port", "70000"}, {"a", "--port", strconv.Itoa(port)}} {
		out, failed := runFails(t, os.Environ(), append([]string{"placeholder"}, args...)...)
		if !failed || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("placeholder %v: failed=%v %q", args, failed, out)
		}
	}
	_ = syscall.Kill(child.Pid, syscall.SIGTERM)
	select {
	case <-child.Done():
		if !child.Exit().Success() {
			t.Errorf("placeholder exit after SIGTERM: %s", child.Exit())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the placeholder did not stop on SIGTERM")
	}
}
