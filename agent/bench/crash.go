package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/state"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// Figures of the crash measurement and the target (issue 2: the supervisor
// adds at most 20 ms to the app's own boot time; PM2 adds ≈ 130 ms).
const (
	figCrash    = "crash → slot answering again: `kill -9` of the app → `GET /health` 200 from the app through the slot"
	figSpawn    = "… crash → new app process spawned"
	figAnswer   = "… spawned → answering"
	figNode     = "reference: bare `node server.js` exec → `GET /health` 200"
	figOverhead = "supervisor overhead: median crash → answering − median bare boot"
)

var targetOverhead = &Target{On: Median, Max: 20}

// appSlot is the slot the crash measurement gives the hello app.
const appSlot = "a"

// crash measures how fast a slot answers again after its app is killed,
// against a bare Node.js boot of the same app, alternating the two.
func (b *bench) crash(ctx context.Context) []Row {
	fail := func(err error) []Row {
		return []Row{failed(figCrash, nil, err), failed(figNode, nil, err), failed(figOverhead, targetOverhead, err)}
	}
	if _, err := exec.LookPath("node"); err != nil {
		return fail(errors.New("node is not installed"))
	}
	appDir, err := os.MkdirTemp(b.root, "app-")
	if err != nil {
		return fail(fmt.Errorf("create app directory: %w", err))
	}
	if err := testkit.WriteAppIn(appDir, testkit.HelloApp); err != nil {
		return fail(err)
	}
	a, err := b.newAgent()
	if err != nil {
		return fail(err)
	}
	// Slot a gets the hello app as its current release, as a deploy leaves it.
	st := state.New()
	st.Slots[appSlot] = &state.Slot{
		Desired: state.DesiredRunning, Current: "r1",
		Releases: []state.Release{{ID: "r1", Dir: appDir, Command: "node server.js", CreatedAt: time.Now().UTC()}},
	}
	if err := state.Save(filepath.Join(a.dataDir, "state.json"), st); err != nil {
		return fail(fmt.Errorf("write state file: %w", err))
	}
	defer b.stop(a)
	if err := a.startReady(); err != nil {
		return fail(err)
	}
	client := newClient()
	defer client.CloseIdleConnections()
	if _, err := pollUntil(ctx, client, a.url(appSlot, "/health"), bodyIs("ok"), time.Now(), 10*time.Second, nil); err != nil {
		return fail(fmt.Errorf("the app in slot %s never answered: %w%s", appSlot, err, a.logTail()))
	}

	var total, spawned, answered, boot []time.Duration
	for i := range b.n.crashRuns {
		b.logf("crash → answering: run %d of %d", i+1, b.n.crashRuns)
		t, s, err := b.crashOnce(ctx, a, client)
		if err != nil {
			return fail(fmt.Errorf("run %d: %w%s", i+1, err, a.logTail()))
		}
		total, spawned, answered = append(total, t), append(spawned, s), append(answered, t-s)
		d, err := b.nodeBoot(ctx, appDir, client)
		if err != nil {
			return fail(fmt.Errorf("bare node boot, run %d: %w", i+1, err))
		}
		boot = append(boot, d)
	}
	crashSt, bootSt := Summarize(msAll(total)), Summarize(msAll(boot))
	paired := make([]float64, len(total))
	for i := range total {
		paired[i] = ms(total[i] - boot[i])
	}
	delay := supervisor.DefaultPolicy().RestartDelay
	return []Row{
		ours(figCrash, "ms", crashSt, nil,
			fmt.Sprintf("each run starts with `slotagent restart a` (a fresh restart loop), so every kill is the first crash in a row: "+
				"restarted at once (default policy: no delay for the first restart in a row, %s × 1.5ⁿ⁻¹ for the n-th after it)", delay)),
		ours(figSpawn, "ms", Summarize(msAll(spawned)), nil,
			"exit reaped, the rest of the app's process group killed, its last log lines written, no restart delay, fork of the new process (a new child of the agent seen in /proc)"),
		ours(figAnswer, "ms", Summarize(msAll(answered)), nil,
			"the app's own boot: the start command `node server.js` runs as `sh -c 'exec node server.js'`, so node replaces sh "+
				"(checked each run: node is the agent's direct child); polled through the slot (each poll until then gets the 503 page)"),
		ours(figNode, "ms", bootSt, nil, "same app, same runs (alternated), no supervisor"),
		ours(figOverhead, "ms", OnlyMedian(crashSt.N, crashSt.Median-bootSt.Median), targetOverhead,
			fmt.Sprintf("median of the per-run differences: %s ms", number(Summarize(paired).Median))),
	}
}

// crashOnce restarts the slot's app, kills it with SIGKILL and returns the
// time until the slot answers from a new app process, and the time until the
// agent had spawned that process.
func (b *bench) crashOnce(ctx context.Context, a *agentProc, client *http.Client) (total, spawned time.Duration, err error) {
	if _, err := a.cli(ctx, "restart", appSlot); err != nil {
		return 0, 0, err
	}
	pid := 0
	isPID := func(status int, body []byte) bool {
		if status != http.StatusOK {
			return false
		}
		p, err := strconv.Atoi(strings.TrimSpace(string(body)))
		pid = p
		return err == nil && p > 0
	}
	if _, err := pollUntil(ctx, client, a.url(appSlot, "/pid"), isPID, time.Now(), 10*time.Second, nil); err != nil {
		return 0, 0, fmt.Errorf("after restart: %w", err)
	}
	if !children(a.pid())[pid] {
		return 0, 0, fmt.Errorf("the app (pid %d) is not a direct child of the agent (pid %d): does a shell stay between them?", pid, a.pid())
	}
	before := children(a.pid())
	spawned = -1
	var t0 time.Time
	watch := func() {
		if spawned >= 0 {
			return
		}
		for c := range children(a.pid()) {
			if !before[c] {
				spawned = time.Since(t0)
				return
			}
		}
	}
	t0 = time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return 0, 0, fmt.Errorf("kill -9 %d: %w", pid, err)
	}
	total, err = pollUntil(ctx, client, a.url(appSlot, "/health"), bodyIs("ok"), t0, 10*time.Second, watch)
	if err != nil {
		return 0, 0, fmt.Errorf("after kill -9: %w", err)
	}
	if spawned < 0 {
		return 0, 0, errors.New("the slot answered, but no new child of the agent was seen")
	}
	status, body, err := get(client, a.url(appSlot, "/pid"))
	if err != nil || status != http.StatusOK || strings.TrimSpace(string(body)) == strconv.Itoa(pid) {
		return 0, 0, fmt.Errorf("after kill -9 the slot still answers from pid %d? status %d, body %q, %v", pid, status, body, err)
	}
	return total, spawned, nil
}

// nodeBoot execs `node server.js` on a free port and returns the time until
// it answers GET /health; the process is killed before returning.
func (b *bench) nodeBoot(ctx context.Context, appDir string, client *http.Client) (time.Duration, error) {
	port, err := testkit.FreePortErr()
	if err != nil {
		return 0, err
	}
	defer client.CloseIdleConnections()
	cmd := exec.Command("node", "server.js")
	cmd.Dir = appDir
	cmd.Env = append(cleanEnv(), "PORT="+strconv.Itoa(port), "SLOT_NAME=bench")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start node: %w", err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	return pollUntil(ctx, client, fmt.Sprintf("http://127.0.0.1:%d/health", port), bodyIs("ok"), start, 10*time.Second, nil)
}
