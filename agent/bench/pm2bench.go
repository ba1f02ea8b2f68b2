package bench

import (
	"context"
	"encoding/json"
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

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/internal/ctxtime"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
)

// cell is the old stack's value of a figure, merged into the row of that
// figure (or appended as a row of its own when no row has it).
type cell struct {
	figure, unit string
	stat         Stat
	// note is appended to the row's note, prefixed "PM2: ".
	note string
}

// pm2MinUptime is PM2's default min_uptime: an app that dies younger
// counts as an unstable restart, and PM2 gives up on an app after 15 of
// them. The crash runs let the app live longer than that before killing it.
const pm2MinUptime = 1100 * time.Millisecond

// oldStack measures the PM2 stack: the figures of the same rows as ours,
// each sub-measurement on a stack of its own. It returns the cells, and a
// failed row for each sub-measurement that could not be had.
func (b *bench) oldStack(ctx context.Context) ([]cell, []Row) {
	if b.pm2Err != nil {
		return nil, []Row{failed("PM2 stack", nil, b.pm2Err)}
	}
	var cells []cell
	var rows []Row
	for _, m := range []struct {
		name string
		run  func(context.Context) ([]cell, error)
	}{
		{"PM2: idle RSS and status queries", b.pm2Idle},
		{"PM2: crash → answering again", b.pm2Crash},
		{"PM2: cold start", b.pm2Cold},
		{"PM2: resurrect", b.pm2Resurrect},
		{"PM2: re-deploy availability", b.pm2Redeploy},
	} {
		if ctx.Err() != nil {
			break
		}
		c, err := m.run(ctx)
		cells = append(cells, c...)
		if err != nil {
			rows = append(rows, failed(m.name, nil, err))
		}
	}
	return cells, rows
}

// pm2Idle reads the RSS of fresh idle stacks (daemon and its six node
// processes), then times `pm2 jlist` and pm2.list() on the last one.
func (b *bench) pm2Idle(ctx context.Context) ([]cell, error) {
	var rss []float64
	var s *pm2Stack
	defer func() {
		if s != nil {
			b.killPM2(s)
		}
	}()
	client := newClient()
	defer client.CloseIdleConnections()
	procs := 0
	for i := range b.n.idleRuns {
		if s != nil {
			b.killPM2(s)
		}
		b.logf("PM2 idle RSS: stack %d of %d", i+1, b.n.idleRuns)
		var err error
		if s, err = b.newPM2Stack(); err != nil {
			return nil, err
		}
		if err := s.startReady(ctx, client); err != nil {
			return nil, err
		}
		for range 3 {
			for _, port := range append([]string{"admin"}, config.SlotNames...) {
				for _, p := range []string{"/", "/health"} {
					if status, _, err := get(client, s.url(port, p)); err != nil || status != http.StatusOK {
						return nil, fmt.Errorf("touch %s: status %d, %v", s.url(port, p), status, err)
					}
				}
			}
		}
		client.CloseIdleConnections()
		if err := ctxtime.Sleep(ctx, settle); err != nil {
			return nil, err
		}
		pid := s.daemonPID()
		if pid <= 0 {
			return nil, fmt.Errorf("no PM2 daemon PID in %s", s.home)
		}
		v, err := treeRSS(pid)
		if err != nil {
			return nil, err
		}
		rss = append(rss, float64(v)/(1<<20))
		procs = 1 + len(children(pid))
	}
	cells := []cell{{figure: figIdleRSS, unit: "MiB", stat: Summarize(rss),
		note: fmt.Sprintf("the daemon and its children (%d processes: daemon, admin, 5 placeholders), same touches and idle time", procs)}}

	b.logf("PM2: pm2 jlist: %d runs", b.n.cliRuns)
	var jlist []float64
	for range b.n.cliRuns {
		start := time.Now()
		out, err := s.run(ctx, "jlist")
		d := time.Since(start)
		if err != nil {
			return cells, err
		}
		var list []json.RawMessage
		if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 6 {
			return cells, fmt.Errorf("pm2 jlist: want 6 processes, got %d (%v)", len(list), err)
		}
		jlist = append(jlist, ms(d))
	}
	js := Summarize(jlist)
	cells = append(cells,
		cell{figure: figAPI, unit: "ms", stat: js, note: "`pm2 jlist`, exec'd as the old admin API did for every status query"},
		cell{figure: figCLI, unit: "ms", stat: js, note: "`pm2 jlist` (same runs)"})

	b.logf("PM2: pm2.list(): %d calls", b.n.apiRequests)
	lat, err := b.pm2List(ctx, s)
	if err != nil {
		return cells, err
	}
	return append(cells, cell{figure: figAPIInProc, unit: "ms", stat: Summarize(lat),
		note: fmt.Sprintf("programmatic API: one `pm2.connect()`, then sequential `pm2.list()` calls (after %d warm-up calls), timed in node", b.n.apiWarmup)}), nil
}

// pm2List runs a node script that connects to the stack's daemon once and
// times pm2.list() calls.
func (b *bench) pm2List(ctx context.Context, s *pm2Stack) ([]float64, error) {
	script := filepath.Join(s.dir, "pm2list.js")
	if err := os.WriteFile(script, []byte(pm2ListJS), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", script, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, s.pm2.pkg, strconv.Itoa(b.n.apiWarmup), strconv.Itoa(b.n.apiRequests))
	cmd.Env = s.env
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, fmt.Errorf("node pm2list.js: %w: %s", err, msg)
	}
	var lat []float64
	if err := json.Unmarshal(out, &lat); err != nil || len(lat) != b.n.apiRequests {
		return nil, fmt.Errorf("node pm2list.js: want %d timings, got %d (%v)", b.n.apiRequests, len(lat), err)
	}
	return lat, nil
}

// writeHello writes the hello app into a new directory under b.root.
func (b *bench) writeHello() (string, error) { return b.writeApp(testkit.HelloApp) }

// writeApp writes the app src into a new directory and returns it.
func (b *bench) writeApp(src string) (string, error) {
	dir, err := os.MkdirTemp(b.root, "app-")
	if err != nil {
		return "", fmt.Errorf("create app directory: %w", err)
	}
	return dir, testkit.WriteAppIn(dir, src)
}

// pm2Crash kills the hello app in slot a with SIGKILL and times until the
// port answers from a new process started by PM2.
func (b *bench) pm2Crash(ctx context.Context) ([]cell, error) {
	s, err := b.newPM2Stack()
	if err != nil {
		return nil, err
	}
	defer b.killPM2(s)
	appDir, err := b.writeHello()
	if err != nil {
		return nil, err
	}
	if err := s.setApp(appSlot, appDir); err != nil {
		return nil, err
	}
	client := newClient()
	defer client.CloseIdleConnections()
	if err := s.startReady(ctx, client); err != nil {
		return nil, err
	}
	var total, boots []float64
	for i := range b.n.crashRuns {
		b.logf("PM2 crash → answering: run %d of %d", i+1, b.n.crashRuns)
		if err := ctxtime.Sleep(ctx, pm2MinUptime); err != nil {
			return nil, err
		}
		pid := 0
		isPID := func(status int, body []byte) bool {
			p, err := strconv.Atoi(strings.TrimSpace(string(body)))
			pid = p
			return status == http.StatusOK && err == nil && p > 0
		}
		if _, err := pollUntil(ctx, client, s.url(appSlot, "/pid"), isPID, time.Now(), 10*time.Second, nil); err != nil {
			return nil, err
		}
		old := pid
		isNew := func(status int, body []byte) bool { return isPID(status, body) && pid != old }
		t0 := time.Now()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			return nil, fmt.Errorf("kill -9 %d: %w", old, err)
		}
		d, err := pollUntil(ctx, client, s.url(appSlot, "/pid"), isNew, t0, 10*time.Second, nil)
		if err != nil {
			return nil, fmt.Errorf("run %d, after kill -9: %w%s", i+1, err, s.logTail())
		}
		total = append(total, ms(d))
		boot, err := b.nodeBoot(ctx, appDir, client)
		if err != nil {
			return nil, fmt.Errorf("bare node boot, run %d: %w", i+1, err)
		}
		boots = append(boots, ms(boot))
	}
	crashSt, bootSt := Summarize(total), Summarize(boots)
	return []cell{
		{figure: figCrash, unit: "ms", stat: crashSt,
			note: fmt.Sprintf("the app restarted by PM2 on its own port; polled straight on the port (GET /pid until a new PID answers); the app lives %s before each kill (past PM2's min_uptime, so no run counts as an unstable restart)", pm2MinUptime)},
		{figure: figOverhead, unit: "ms", stat: OnlyMedian(crashSt.N, crashSt.Median-bootSt.Median),
			note: fmt.Sprintf("against its own bare boots, alternated with its crash runs (median %s ms)", number(bootSt.Median))},
	}, nil
}

// pm2Cold times `pm2 start ecosystem.config.js` with no daemon running (a
// fresh PM2_HOME each run) until all six ports answer.
func (b *bench) pm2Cold(ctx context.Context) ([]cell, error) {
	client := newClient()
	defer client.CloseIdleConnections()
	var runs []float64
	for i := range b.n.coldRuns {
		b.logf("PM2 cold start: run %d of %d", i+1, b.n.coldRuns)
		d, err := func() (time.Duration, error) {
			s, err := b.newPM2Stack()
			if err != nil {
				return 0, err
			}
			defer b.killPM2(s)
			start := time.Now()
			if err := s.start(ctx); err != nil {
				return 0, err
			}
			return s.waitAll(ctx, client, start)
		}()
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		runs = append(runs, ms(d))
	}
	return []cell{{figure: figCold, unit: "ms", stat: Summarize(runs),
		note: "exec `pm2 start ecosystem.config.js` with no daemon (fresh PM2_HOME each run): spawns the daemon, then the six apps"}}, nil
}

// pm2Resurrect starts a stack whose five slots run the hello app, saves
// it (`pm2 save`), then repeatedly kills it (`pm2 kill`) and times `pm2
// resurrect` until all six ports answer.
func (b *bench) pm2Resurrect(ctx context.Context) ([]cell, error) {
	s, err := b.newPM2Stack()
	if err != nil {
		return nil, err
	}
	defer b.killPM2(s)
	for _, slot := range config.SlotNames {
		dir, err := b.writeHello()
		if err != nil {
			return nil, err
		}
		if err := s.setApp(slot, dir); err != nil {
			return nil, err
		}
	}
	client := newClient()
	defer client.CloseIdleConnections()
	if err := s.startReady(ctx, client); err != nil {
		return nil, err
	}
	if _, err := s.run(ctx, "save"); err != nil {
		return nil, err
	}
	var runs []float64
	for i := range b.n.coldRuns {
		b.logf("PM2 resurrect: run %d of %d", i+1, b.n.coldRuns)
		if _, err := s.run(ctx, "kill"); err != nil {
			return nil, err
		}
		client.CloseIdleConnections()
		start := time.Now()
		if _, err := s.run(ctx, "resurrect"); err != nil {
			return nil, err
		}
		d, err := s.waitAll(ctx, client, start)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		runs = append(runs, ms(d))
	}
	return []cell{{figure: figRehydrate, unit: "ms", stat: Summarize(runs),
		note: "`pm2 save` once, then each run `pm2 kill` and exec `pm2 resurrect` (spawns the daemon, then the six apps) → all six answering"}}, nil
}

// pm2Redeploy deploys a new release of the hello app (a new directory:
// new script and cwd) to slot a, the way PM2 can: `pm2 restart` of an
// ecosystem file keeps an app's old script and cwd (checked with PM2 7),
// so the app is deleted and started again from the regenerated ecosystem
// file. A client loops on GET / meanwhile.
func (b *bench) pm2Redeploy(ctx context.Context) ([]cell, error) {
	s, err := b.newPM2Stack()
	if err != nil {
		return nil, err
	}
	defer b.killPM2(s)
	dir, err := b.writeHello()
	if err != nil {
		return nil, err
	}
	if err := s.setApp(appSlot, dir); err != nil {
		return nil, err
	}
	client := newClient()
	defer client.CloseIdleConnections()
	if err := s.startReady(ctx, client); err != nil {
		return nil, err
	}
	var sent, failures, gaps, wall []float64
	for i := range b.n.redeploys {
		b.logf("PM2 re-deploy: run %d of %d", i+1, b.n.redeploys)
		if dir, err = b.writeHello(); err != nil {
			return nil, err
		}
		if err := s.setApp(appSlot, dir); err != nil {
			return nil, err
		}
		l := startLoad(s.url(appSlot, "/"))
		if err := ctxtime.Sleep(ctx, loadMargin); err != nil {
			l.stop()
			return nil, err
		}
		start := time.Now()
		_, err1 := s.run(ctx, "delete", "slot-"+appSlot)
		var err2 error
		if err1 == nil {
			_, err2 = s.run(ctx, "start", s.ecosystemPath(), "--only", "slot-"+appSlot)
		}
		var err3 error
		if err1 == nil && err2 == nil {
			_, err3 = pollUntil(ctx, client, s.url(appSlot, "/health"), bodyIs("ok"), start, 20*time.Second, nil)
		}
		took := time.Since(start)
		_ = ctxtime.Sleep(ctx, loadMargin)
		st := l.stop()
		for _, err := range []error{err1, err2, err3} {
			if err != nil {
				return nil, fmt.Errorf("run %d: %w", i+1, err)
			}
		}
		pid, err := s.appPID(ctx, "slot-"+appSlot)
		if err != nil {
			return nil, err
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil {
			return nil, fmt.Errorf("run %d: the working directory of slot-a: %w", i+1, err)
		}
		if cwd != dir {
			return nil, fmt.Errorf("run %d: slot-a runs in %q, not the new release %q", i+1, cwd, dir)
		}
		sent, failures = append(sent, float64(st.sent)), append(failures, float64(st.failed))
		gaps, wall = append(gaps, ms(st.longestGap)), append(wall, ms(took))
	}
	return []cell{
		{figure: figZDDeploySent, unit: Requests, stat: Summarize(sent),
			note: fmt.Sprintf("`pm2 delete slot-a` + `pm2 start ecosystem.config.js --only slot-a` with a new script and cwd (`pm2 restart` of the ecosystem file keeps the old ones), exec → the new app answering: median %s ms", number(Summarize(wall).Median))},
		{figure: figZDDeployFail, unit: Requests, stat: Summarize(failures)},
		{figure: figZDDeployGap, unit: "ms", stat: Summarize(gaps)},
	}, nil
}

// merge puts each cell into the row of its figure, as the column of
// stack, or appends a row for it.
func merge(rows []Row, stack string, cells []cell) []Row {
	for _, c := range cells {
		i := 0
		for i < len(rows) && rows[i].Figure != c.figure {
			i++
		}
		if i == len(rows) {
			rows = append(rows, Row{Figure: c.figure, Unit: c.unit, Cells: map[string]Stat{}})
		}
		r := &rows[i]
		if r.Err != nil {
			continue
		}
		if r.Cells == nil {
			r.Cells = map[string]Stat{}
		}
		r.Cells[stack] = c.stat
		if c.note != "" {
			r.Note = strings.TrimSpace(r.Note + "; " + stack + ": " + c.note)
			r.Note = strings.TrimPrefix(r.Note, "; ")
		}
	}
	return rows
}
