package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/internal/ctxtime"
)

// Figures of following a branch (issue 21): what five slots following one
// repository cost the agent and the forge while nothing moves, and how
// soon a push serves at a short interval.
const (
	figFollowIdleCPU  = "follow, idle: agent CPU with 5 slots following one repository every 30s (the agent and the git it ran)"
	figFollowBaseCPU  = "… the same agent and apps, following nothing"
	figFollowRequests = "… requests to the forge (git smart HTTP) per hour"
	figFollowChecks   = "… of which ref listings (`git ls-remote`: GET info/refs)"
	figFollowLatency  = "follow, push → serving at a 10s interval: `git push` to the forge → slot a serving the new commit"
)

// Settings of the follow measurement.
const (
	followIdleInterval = 30 * time.Second // the default interval
	followPushInterval = 10 * time.Second
	// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat
	// (100 on every Linux architecture that exports them to user space).
	clockTicks = 100
)

// forge serves bare repositories under root over git's smart HTTP protocol
// (`git http-backend` as CGI) on a loopback port, and counts the requests
// it answers.
type forge struct {
	url      string
	srv      *http.Server
	requests atomic.Int64 // every request
	listings atomic.Int64 // GET …/info/refs: the start of every ls-remote or fetch
}

// startForge starts a forge for the repositories under root; close stops it.
func startForge(root string) (*forge, error) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return nil, errors.New("git is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the forge: %w", err)
	}
	f := &forge{url: "http://" + ln.Addr().String()}
	backend := &cgi.Handler{Path: gitPath, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	f.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs") {
			f.listings.Add(1)
		}
		backend.ServeHTTP(w, r)
	})}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

func (f *forge) close() { _ = f.srv.Close() }

// cpuSeconds is the CPU time of process pid and of the children it has
// waited for (utime, stime, cutime and cstime of /proc/<pid>/stat).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read the CPU time of %d: %w", pid, err)
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'; utime is field 14 of the whole line.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 15 {
		return 0, fmt.Errorf("read the CPU time of %d: unexpected /proc/%d/stat", pid, pid)
	}
	var ticks float64
	for _, f := range fields[11:15] {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return 0, fmt.Errorf("read the CPU time of %d: %w", pid, err)
		}
		ticks += v
	}
	return ticks / clockTicks, nil
}

// follow deploys the sample app from a forge into the five slots of a
// fresh agent, measures the agent's CPU and the forge's requests over a
// window following nothing, then over one with the five slots following
// main every 30s; then slot a follows every 10s and b.n.redeploys pushes,
// each at a random moment, are timed until the slot serves them.
func (b *bench) follow(ctx context.Context) []Row {
	idle := []string{figFollowIdleCPU, figFollowBaseCPU, figFollowRequests, figFollowChecks}
	fail := func(err error, figs ...string) []Row {
		var rows []Row
		for _, f := range figs {
			rows = append(rows, failed(f, nil, err))
		}
		return rows
	}
	a, r, err := b.sampleAgent(ctx)
	if err != nil {
		return fail(err, append(idle, figFollowLatency)...)
	}
	defer b.stop(a)
	f, err := startForge(filepath.Dir(r.bare))
	if err != nil {
		return fail(err, append(idle, figFollowLatency)...)
	}
	defer f.close()
	upstream := f.url + "/" + filepath.Base(r.bare)
	if err := r.commit(ctx, "v1"); err != nil {
		return fail(err, append(idle, figFollowLatency)...)
	}
	b.logf("follow: deploying the sample app into the five slots from %s", upstream)
	for _, s := range config.SlotNames {
		if out, err := b.deployCmd(ctx, a, firstDeployTimeout, "deploy", s, "--repo", upstream, "--ref", "main", "--wait"); err != nil {
			return fail(fmt.Errorf("%w\n%s%s", err, tail(out), a.logTail()), append(idle, figFollowLatency)...)
		}
	}
	rows := b.followIdle(ctx, a, f)
	return append(rows, b.followLatency(ctx, a, r))
}

// window measures the agent's CPU seconds and the forge's requests over
// b.n.followWindow, as rates per hour.
func (b *bench) window(ctx context.Context, a *agentProc, f *forge) (cpu, requests, listings float64, err error) {
	before, err := cpuSeconds(a.pid())
	if err != nil {
		return 0, 0, 0, err
	}
	req0, list0 := f.requests.Load(), f.listings.Load()
	start := time.Now()
	if err := ctxtime.Sleep(ctx, b.n.followWindow); err != nil {
		return 0, 0, 0, err
	}
	after, err := cpuSeconds(a.pid())
	if err != nil {
		return 0, 0, 0, err
	}
	perHour := float64(time.Hour) / float64(time.Since(start))
	return (after - before) * perHour, float64(f.requests.Load()-req0) * perHour, float64(f.listings.Load()-list0) * perHour, nil
}

// followIdle is the idle part of follow.
func (b *bench) followIdle(ctx context.Context, a *agentProc, f *forge) []Row {
	base := failed(figFollowBaseCPU, nil, nil)
	fail := func(err error) []Row {
		if base.Err == nil && base.Cells == nil {
			base.Err = err
		}
		return []Row{failed(figFollowIdleCPU, nil, err), base, failed(figFollowRequests, nil, err), failed(figFollowChecks, nil, err)}
	}
	b.logf("follow: %s idle, following nothing", b.n.followWindow)
	baseCPU, baseReq, _, err := b.window(ctx, a, f)
	if err != nil {
		return fail(err)
	}
	base = ours(figFollowBaseCPU, "CPU s/h", Summarize([]float64{baseCPU}), nil,
		fmt.Sprintf("the window just before, same agent and apps; the forge got %.0f requests per hour then", baseReq))
	for _, s := range config.SlotNames {
		if out, err := b.deployCmd(ctx, a, deployTimeout, "follow", s, "--interval", followIdleInterval.String()); err != nil {
			return fail(fmt.Errorf("%w\n%s", err, tail(out)))
		}
	}
	// The first checks (at once, on turning following on) are not idle.
	if err := ctxtime.Sleep(ctx, 2*time.Second); err != nil {
		return fail(err)
	}
	b.logf("follow: %s idle, five slots following every %s", b.n.followWindow, followIdleInterval)
	cpu, req, list, err := b.window(ctx, a, f)
	if err != nil {
		return fail(err)
	}
	note := fmt.Sprintf("CPU seconds per hour of the agent's process and the children it reaped (utime+stime+cutime+cstime of /proc/<pid>/stat) over %s, "+
		"the apps (still running) not included; the five slots serve the sample app deployed from one repository on a loopback forge "+
		"(`git http-backend` behind Go's CGI handler, counting the requests it answers); the checks are jittered by ±10 %%", b.n.followWindow)
	return []Row{
		ours(figFollowIdleCPU, "CPU s/h", Summarize([]float64{cpu}), nil, note),
		base,
		ours(figFollowRequests, "requests/h", Summarize([]float64{req}), nil,
			fmt.Sprintf("5 slots × 1 h / %s = %d checks an hour if none were shared", followIdleInterval, int(5*time.Hour/followIdleInterval))),
		ours(figFollowChecks, "requests/h", Summarize([]float64{list}), nil, "each ls-remote over smart HTTP starts with a GET of info/refs"),
	}
}

// followSettled waits until slot a's following is back to "following"
// (the check after a deploy has run).
func (b *bench) followSettled(ctx context.Context, a *agentProc) error {
	client := newClient()
	defer client.CloseIdleConnections()
	_, err := pollUntil(ctx, client, a.url("admin", "/api/slots/"+appSlot+"/follow"), func(status int, body []byte) bool {
		var st struct{ State string }
		return status == http.StatusOK && json.Unmarshal(body, &st) == nil && st.State == "following"
	}, time.Now(), deployTimeout, nil)
	return err
}

// followLatency is the push → serving part of follow: slot a follows
// every followPushInterval; each push happens at a random moment of the
// interval (a wait of 0 to one interval after the check that followed the
// previous deploy), so the wait for the next check is as a user's.
func (b *bench) followLatency(ctx context.Context, a *agentProc, r *sampleRepo) Row {
	for _, s := range config.SlotNames[1:] {
		if _, err := b.deployCmd(ctx, a, deployTimeout, "follow", s, "--off"); err != nil {
			return failed(figFollowLatency, nil, err)
		}
	}
	if out, err := b.deployCmd(ctx, a, deployTimeout, "follow", appSlot, "--interval", followPushInterval.String()); err != nil {
		return failed(figFollowLatency, nil, fmt.Errorf("%w\n%s", err, tail(out)))
	}
	client := newClient()
	defer client.CloseIdleConnections()
	var lat []float64
	for i := range b.n.redeploys {
		version := fmt.Sprintf("v%d", i+2)
		if err := ctxtime.Sleep(ctx, rand.N(followPushInterval)); err != nil {
			return failed(figFollowLatency, nil, err)
		}
		b.logf("follow: push %d of %d (%s)", i+1, b.n.redeploys, version)
		if err := r.commit(ctx, version); err != nil {
			return failed(figFollowLatency, nil, err)
		}
		pushed := time.Now()
		d, err := pollUntil(ctx, client, a.url(appSlot, "/"), bodyIs(sampleBody(version)), pushed, followPushInterval+deployTimeout, nil)
		if err != nil {
			return failed(figFollowLatency, nil, fmt.Errorf("push %d: %w%s", i+1, err, a.logTail()))
		}
		lat = append(lat, ms(d))
		// The next wait counts from the check that follows this deploy
		// (made as it ends): the phase of the interval a user's push
		// meets.
		if err := b.followSettled(ctx, a); err != nil {
			return failed(figFollowLatency, nil, fmt.Errorf("push %d: %w", i+1, err))
		}
	}
	return ours(figFollowLatency, "ms", Summarize(lat), nil, fmt.Sprintf(
		"timed from the end of the push (a commit of a new VERSION, unchanged dependencies) to GET / answering it, polled every %s; "+
			"each push after a random wait of 0 to %s from the check that followed the previous deploy, so it lands anywhere in the interval: "+
			"expect about half an interval plus a re-deploy",
		pollInterval, followPushInterval))
}
