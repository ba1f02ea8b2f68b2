package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/internal/ctxtime"
)

// Figures of the re-deploy measurement and their targets (issue 3: a
// re-deploy of a small app with unchanged dependencies, from command to
// serving, takes at most 3 s plus the app's boot time; no request fails
// during a re-deploy or a rollback).
const (
	figRedeploy      = "re-deploy, unchanged dependencies: `slotagent deploy a --repo … --wait` → slot serving the new commit"
	figRedeployQuiet = "… the same, without the zero-downtime client looping meanwhile"
	figRedeployCmd   = "… the deploy command's own wall time (exec → exit), client looping"
	figAppBoot       = "reference: bare `node server.js` of the sample app exec → `GET /health` 200"
	figZDDeploySent  = "zero downtime during each re-deploy: `GET /` requests sent to slot a"
	figZDDeployFail  = "… failed (non-200 or error)"
	figZDDeployGap   = "… longest gap between two successful responses"
	figZDRollbackSnt = "zero downtime during `slotagent rollback a --wait`: `GET /` requests sent to slot a"
	figZDRollbackFl  = "… failed (non-200 or error)"
	figZDRollbackGap = "… longest gap between two successful responses"
)

// redeployBudget is the re-deploy target without the app's boot time.
const redeployBudget = 3 * time.Second

var targetNoFailure = &Target{On: Max, Max: 0}

// Bounds of the re-deploy measurement.
const (
	firstDeployTimeout = 3 * time.Minute  // npm ci with an empty cache
	deployTimeout      = 60 * time.Second // a timed re-deploy or the rollback
	loadMargin         = 200 * time.Millisecond
	bootsPerRedeploy   = 3
)

// sampleServer is the sample app: it uses its npm dependency (ms) and
// answers its VERSION.
const sampleServer = `const http = require('http');
const ms = require('ms');
const VERSION = '%s';
http.createServer((req, res) => {
  if (req.url === '/health') { res.end('ok'); return; }
  res.end('hello ' + VERSION + ' ' + ms(60000));
}).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('sample listening on ' + process.env.PORT));
`

// sampleBody is what the sample app answers on / at version v.
func sampleBody(v string) string { return "hello " + v + " 1m" }

// sampleLockDir is where the sample app's package.json and lockfile live,
// relative to the module root.
var sampleLockDir = filepath.Join("agent", "buildpack", "testdata", "app-ms")

// redeploy deploys the sample app to slot a of a fresh agent once (not
// timed: it fills the npm cache), then re-deploys it b.n.redeploys times,
// each a new commit with a new VERSION, and finally rolls back once, with a
// client sending GET / in a loop through every re-deploy and the rollback.
func (b *bench) redeploy(ctx context.Context) []Row {
	boundTarget := &Target{On: Median, Max: ms(redeployBudget)}
	fail := func(err error) []Row {
		return []Row{
			failed(figRedeploy, boundTarget, err), failed(figRedeployQuiet, nil, err), failed(figRedeployCmd, nil, err), failed(figAppBoot, nil, err),
			failed(figZDDeploySent, nil, err), failed(figZDDeployFail, targetNoFailure, err), failed(figZDDeployGap, nil, err),
			failed(figZDRollbackSnt, nil, err), failed(figZDRollbackFl, targetNoFailure, err), failed(figZDRollbackGap, nil, err),
		}
	}
	a, r, err := b.sampleAgent(ctx)
	if err != nil {
		return fail(err)
	}
	defer b.stop(a)

	b.logf("re-deploy: first deploy of the sample app (npm ci, not timed)")
	if err := r.commit(ctx, "v1"); err != nil {
		return fail(err)
	}
	if out, err := b.deployCmd(ctx, a, firstDeployTimeout, "deploy", appSlot, "--repo", r.bare, "--wait"); err != nil {
		return fail(fmt.Errorf("first deploy: %w\n%s%s", err, tail(out), a.logTail()))
	}
	client := newClient()
	defer client.CloseIdleConnections()
	if status, body, err := get(client, a.url(appSlot, "/")); err != nil || string(body) != sampleBody("v1") {
		return fail(fmt.Errorf("after the first deploy slot %s answers %d %q, %v", appSlot, status, body, err))
	}
	// The bare boots run on a copy of the first release (node_modules
	// included): the agent prunes its release folders.
	bootDir, err := b.copyRelease(ctx, a)
	if err != nil {
		return fail(err)
	}

	// Each run is a re-deploy with the looping client (the figure and the
	// zero-downtime rows), then one without it (the client competes with
	// the deploy for the CPU), then bare boots of the app.
	var serving, quiet, wall, boots, gaps []time.Duration
	var windows [][2]time.Time // exec → exit of the loaded re-deploys
	var gapWhen, notReused []string
	var sent, failures []float64
	firstFailure, version, previous, deploys := "", "v1", "", 1
	for i := range b.n.redeploys {
		for _, withLoad := range []bool{true, false} {
			deploys++
			previous, version = version, fmt.Sprintf("v%d", deploys)
			b.logf("re-deploy: run %d of %d (%s, client looping: %t)", i+1, b.n.redeploys, version, withLoad)
			if err := r.commit(ctx, version); err != nil {
				return fail(err)
			}
			res, err := b.timedDeploy(ctx, a, withLoad, sampleBody(version), "deploy", appSlot, "--repo", r.bare, "--wait")
			if err != nil {
				return fail(fmt.Errorf("re-deploy %d (%s): %w%s", i+1, version, err, a.logTail()))
			}
			if !strings.Contains(res.out, "reusing node_modules") {
				notReused = append(notReused, version)
			}
			if !withLoad {
				quiet = append(quiet, res.serving)
				continue
			}
			serving, wall = append(serving, res.serving), append(wall, res.wall)
			windows = append(windows, [2]time.Time{res.start, res.start.Add(res.wall)})
			sent, failures = append(sent, float64(res.load.sent)), append(failures, float64(res.load.failed))
			gaps = append(gaps, res.load.longestGap)
			gapWhen = append(gapWhen, fmt.Sprintf("%s ms ending %s ms after the exec (new version served from %s ms)",
				number(ms(res.load.longestGap)), number(ms(res.gapEnd)), number(ms(res.serving))))
			if firstFailure == "" {
				firstFailure = res.load.firstFailure
			}
		}
		for range bootsPerRedeploy {
			d, err := b.nodeBoot(ctx, bootDir, client)
			if err != nil {
				return fail(fmt.Errorf("bare node boot of the sample app: %w", err))
			}
			boots = append(boots, d)
		}
	}
	stages := b.stageMedians(client, a, windows)

	b.logf("re-deploy: rollback to %s", previous)
	rb, rbErr := b.timedDeploy(ctx, a, true, sampleBody(previous), "rollback", appSlot, "--wait")

	bootSt := Summarize(msAll(boots))
	target := &Target{On: Median, Max: ms(redeployBudget) + bootSt.Median}
	servingNote := fmt.Sprintf("each run commits a new VERSION (server.js only) and execs the deploy; GET / polled through slot a every %s, in parallel, "+
		"while the client of the zero-downtime rows loops on GET / too; "+
		"node_modules reused (every deploy log says \"reusing node_modules\"), npm cache warmed by a first, untimed deploy; "+
		"target = 3 s + median bare boot of the app (%s ms)", pollInterval, number(bootSt.Median))
	rows := []Row{ours(figRedeploy, "ms", Summarize(msAll(serving)), target, servingNote)}
	if len(notReused) > 0 {
		rows[0].Err = fmt.Errorf("the deploy log of %s does not say \"reusing node_modules\": dependencies were installed again", strings.Join(notReused, ", "))
	}
	cmdNote := "`--wait` returns after the cutover: swap, drain and stop of the old release, state saved"
	if stages != "" {
		cmdNote += "; stage medians from the deploy records: " + stages
	}
	failNote := fmt.Sprintf("%d failed of %d sent in all", int(sum(failures)), int(sum(sent)))
	if firstFailure != "" {
		failNote += "; first failure: " + firstFailure
	}
	rows = append(rows,
		ours(figRedeployQuiet, "ms", Summarize(msAll(quiet)), nil,
			fmt.Sprintf("alternated with the runs above; on %d cores the looping client, the proxy and the serving app compete with the deploy", runtime.NumCPU())),
		ours(figRedeployCmd, "ms", Summarize(msAll(wall)), nil, cmdNote),
		ours(figAppBoot, "ms", bootSt, nil,
			fmt.Sprintf("a copy of the first release (node_modules included), %d boots after each pair of re-deploys, no supervisor", bootsPerRedeploy)),
		ours(figZDDeploySent, Requests, Summarize(sent), nil,
			fmt.Sprintf("one keep-alive client, sequential, no pause, from %s before the deploy's exec to %s after its exit", loadMargin, loadMargin)),
		ours(figZDDeployFail, Requests, Summarize(failures), targetNoFailure, failNote),
		ours(figZDDeployGap, "ms", Summarize(msAll(gaps)), nil, "per run: "+strings.Join(gapWhen, "; ")),
	)
	if rbErr != nil {
		err := fmt.Errorf("rollback: %w%s", rbErr, a.logTail())
		return append(rows, failed(figZDRollbackSnt, nil, err), failed(figZDRollbackFl, targetNoFailure, err), failed(figZDRollbackGap, nil, err))
	}
	rbNote := fmt.Sprintf("back to the previous release (%s): same health gate and cutover; the command took %s ms, serving %s after %s ms",
		previous, number(ms(rb.wall)), previous, number(ms(rb.serving)))
	rbFail := ""
	if rb.load.firstFailure != "" {
		rbFail = "first failure: " + rb.load.firstFailure
	}
	return append(rows,
		ours(figZDRollbackSnt, Requests, Summarize([]float64{float64(rb.load.sent)}), nil, rbNote),
		ours(figZDRollbackFl, Requests, Summarize([]float64{float64(rb.load.failed)}), targetNoFailure, rbFail),
		ours(figZDRollbackGap, "ms", Summarize([]float64{ms(rb.load.longestGap)}), nil,
			fmt.Sprintf("ending %s ms after the exec", number(ms(rb.gapEnd)))),
	)
}

// sampleAgent checks what the re-deploy measurements need, starts a fresh
// agent (the caller stops it) and makes the sample app's repository, with
// nothing committed yet.
func (b *bench) sampleAgent(ctx context.Context) (*agentProc, *sampleRepo, error) {
	if b.n.redeploys < 1 {
		return nil, nil, errors.New("no re-deploys configured")
	}
	for _, tool := range []string{"node", "npm", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, nil, fmt.Errorf("%s is not installed", tool)
		}
	}
	if b.modErr != nil {
		return nil, nil, b.modErr
	}
	dir, err := os.MkdirTemp(b.root, "repo-")
	if err != nil {
		return nil, nil, fmt.Errorf("create repo directory: %w", err)
	}
	r := &sampleRepo{bare: filepath.Join(dir, "app.git"), work: filepath.Join(dir, "work")}
	if err := r.init(ctx, filepath.Join(b.modDir, sampleLockDir)); err != nil {
		return nil, nil, err
	}
	a, err := b.newAgent()
	if err != nil {
		return nil, nil, err
	}
	if err := a.startReady(); err != nil {
		b.stop(a)
		return nil, nil, err
	}
	return a, r, nil
}

// deployResult is one timed deploy or rollback.
type deployResult struct {
	start   time.Time     // the exec
	serving time.Duration // exec → the slot answers with the new version
	wall    time.Duration // exec → the command exited
	gapEnd  time.Duration // exec → the end of the load's longest gap
	out     string        // what the command printed
	load    loadStats     // the client looping on GET / meanwhile
}

// timedDeploy runs `slotagent args…` (a deploy or rollback with --wait),
// with withLoad while a client loops on GET / of slot a, and times it until
// the slot answers want and until the command exits. A failed command, or a
// slot that never answers want, is an error.
func (b *bench) timedDeploy(ctx context.Context, a *agentProc, withLoad bool, want string, args ...string) (deployResult, error) {
	return b.timedCommand(ctx, a, appSlot, withLoad, want, func(ctx context.Context) *exec.Cmd {
		cmd := exec.CommandContext(ctx, a.bin, args...)
		cmd.Env = a.env
		return cmd
	})
}

// timedCommand runs the command that mk makes (bound by ctx), with
// withLoad while a client loops on GET / of slot, and times it until the
// slot answers want and until the command exits. A failed command, or a
// slot that never answers want, is an error.
func (b *bench) timedCommand(ctx context.Context, a *agentProc, slot string, withLoad bool, want string, mk func(context.Context) *exec.Cmd) (deployResult, error) {
	var res deployResult
	var load *loadClient
	if withLoad {
		load = startLoad(a.url(slot, "/"))
		defer load.stop()
		if err := ctxtime.Sleep(ctx, loadMargin); err != nil {
			return res, err
		}
	}

	ctx, cancel := context.WithTimeout(ctx, deployTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := mk(ctx)
	args := cmd.Args
	cmd.Stdout, cmd.Stderr = &out, &out
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	exited := make(chan error, 1)
	start := time.Now()
	res.start = start
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start %s: %w", strings.Join(args, " "), err)
	}
	go func() {
		err := cmd.Wait()
		res.wall = time.Since(start)
		if err != nil {
			stopPoll() // a failed command: the new version will not come
		}
		exited <- err
	}()
	client := newClient()
	defer client.CloseIdleConnections()
	serving, pollErr := pollUntil(pollCtx, client, a.url(slot, "/"), bodyIs(want), start, deployTimeout, nil)
	cmdErr := <-exited
	res.out = out.String()
	if cmdErr != nil {
		return res, fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), cmdErr, tail(res.out))
	}
	if pollErr != nil {
		return res, fmt.Errorf("slot %s never served %q: %w\n%s", slot, want, pollErr, tail(res.out))
	}
	res.serving = serving
	if !withLoad {
		return res, nil
	}
	if err := ctxtime.Sleep(ctx, loadMargin); err != nil {
		return res, err
	}
	res.load = load.stop()
	res.gapEnd = res.load.gapEnd.Sub(start)
	if res.load.bodies[want] == 0 {
		return res, fmt.Errorf("the looping client never got %q (answers: %v)", want, res.load.bodies)
	}
	return res, nil
}

// deployCmd runs a client command with its own time bound and returns its
// combined output.
func (b *bench) deployCmd(ctx context.Context, a *agentProc, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, a.bin, args...)
	cmd.Env = a.env
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("slotagent %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), nil
}

// copyRelease copies slot a's only release folder (after the first
// deploy) into the run's directory and returns the copy.
func (b *bench) copyRelease(ctx context.Context, a *agentProc) (string, error) {
	rels, err := filepath.Glob(filepath.Join(a.dataDir, "slots", appSlot, "releases", "*"))
	if err != nil || len(rels) != 1 {
		return "", fmt.Errorf("find the first release of slot %s: %d folders, %v", appSlot, len(rels), err)
	}
	dst := filepath.Join(b.root, "boot-app")
	if _, err := outputIn(ctx, b.root, "cp", "-a", rels[0], dst); err != nil {
		return "", fmt.Errorf("copy the first release: %w", err)
	}
	return dst, nil
}

// stageMedians summarises the stages of the re-deploys that started within
// windows from the agent's deploy records ("fetch 20 ms, detect 1 ms, …");
// "" when they cannot be read.
func (b *bench) stageMedians(client *http.Client, a *agentProc, windows [][2]time.Time) string {
	order, byName, err := stageTimes(client, a, windows)
	if err != nil {
		b.logf("read the deploy records: %v", err)
		return ""
	}
	parts := make([]string, 0, len(order))
	for _, name := range order {
		parts = append(parts, fmt.Sprintf("%s %s ms", name, strconv.FormatFloat(Summarize(byName[name]).Median, 'f', -1, 64)))
	}
	return strings.Join(parts, ", ")
}

// stageTimes reads the stage durations (ms) of the deploys of slot a that
// began within windows, one per window, from the agent's deploy records:
// the stage names in order and each stage's durations.
func stageTimes(client *http.Client, a *agentProc, windows [][2]time.Time) ([]string, map[string][]float64, error) {
	status, body, err := get(client, a.url("admin", "/api/slots/"+appSlot+"/deploys"))
	if err != nil || status != http.StatusOK {
		return nil, nil, fmt.Errorf("status %d, %v", status, err)
	}
	var list struct {
		Deploys []deploy.Record `json:"deploys"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, nil, err
	}
	var deploys []deploy.Record
	for _, rec := range list.Deploys {
		for _, w := range windows {
			if rec.Trigger == deploy.TriggerDeploy && !rec.CreatedAt.Before(w[0]) && !rec.CreatedAt.After(w[1]) {
				deploys = append(deploys, rec)
			}
		}
	}
	if len(deploys) != len(windows) {
		return nil, nil, fmt.Errorf("%d match the timed re-deploys, want %d", len(deploys), len(windows))
	}
	var order []string
	byName := map[string][]float64{}
	for _, rec := range deploys {
		for _, st := range rec.Stages {
			if _, ok := byName[st.Name]; !ok {
				order = append(order, st.Name)
			}
			byName[st.Name] = append(byName[st.Name], float64(st.DurationMS))
		}
	}
	return order, byName, nil
}

// loadStats is what a looping client saw.
type loadStats struct {
	sent, failed int
	// longestGap is the longest time between two successful responses
	// (from the start to the first one, too), gapEnd when it ended.
	longestGap time.Duration
	gapEnd     time.Time
	// firstFailure says how the first failed request failed.
	firstFailure string
	// bodies counts the successful answers by body.
	bodies map[string]int
}

// loadClient sends GET url in a loop, one request at a time over a
// keep-alive connection, until stopped.
type loadClient struct {
	quit, done chan struct{}
	once       sync.Once
	stats      loadStats
}

func startLoad(url string) *loadClient {
	l := &loadClient{quit: make(chan struct{}), done: make(chan struct{}), stats: loadStats{bodies: map[string]int{}}}
	go func() {
		defer close(l.done)
		client := newClient()
		defer client.CloseIdleConnections()
		last := time.Now()
		for {
			select {
			case <-l.quit:
				return
			default:
			}
			l.stats.sent++
			status, body, err := get(client, url)
			if err != nil || status != http.StatusOK {
				l.stats.failed++
				if l.stats.firstFailure == "" {
					if err != nil {
						l.stats.firstFailure = err.Error()
					} else {
						l.stats.firstFailure = fmt.Sprintf("%d %.80q", status, body)
					}
				}
				time.Sleep(time.Millisecond) // a refused connection must not spin
				continue
			}
			now := time.Now()
			if gap := now.Sub(last); gap > l.stats.longestGap {
				l.stats.longestGap, l.stats.gapEnd = gap, now
			}
			last = now
			l.stats.bodies[string(body)]++
		}
	}()
	return l
}

// stop ends the loop and returns what it saw; it is safe to call twice.
func (l *loadClient) stop() loadStats {
	l.once.Do(func() { close(l.quit) })
	<-l.done
	return l.stats
}

// sampleRepo is a bare repository holding the sample app and the work tree
// that pushes to it.
type sampleRepo struct {
	bare, work string
}

// init creates both, with package.json and package-lock.json copied from
// lockDir.
func (r *sampleRepo) init(ctx context.Context, lockDir string) error {
	if err := os.MkdirAll(r.work, 0o755); err != nil {
		return fmt.Errorf("create the work tree: %w", err)
	}
	if err := git(ctx, filepath.Dir(r.bare), "init", "-q", "--bare", r.bare); err != nil {
		return err
	}
	if err := git(ctx, r.work, "init", "-q"); err != nil {
		return err
	}
	for _, f := range []string{"package.json", "package-lock.json"} {
		data, err := os.ReadFile(filepath.Join(lockDir, f))
		if err != nil {
			return fmt.Errorf("read the sample app: %w", err)
		}
		if err := os.WriteFile(filepath.Join(r.work, f), data, 0o644); err != nil {
			return fmt.Errorf("write the sample app: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(r.work, ".gitignore"), []byte("node_modules/\n"), 0o644); err != nil {
		return fmt.Errorf("write the sample app: %w", err)
	}
	return nil
}

// commit writes server.js answering version, commits everything and
// pushes it to the bare repository's main branch.
func (r *sampleRepo) commit(ctx context.Context, version string) error {
	if err := os.WriteFile(filepath.Join(r.work, "server.js"), fmt.Appendf(nil, sampleServer, version), 0o644); err != nil {
		return fmt.Errorf("write server.js: %w", err)
	}
	for _, args := range [][]string{
		{"add", "-A"},
		{"commit", "-q", "-m", version},
		{"push", "-q", r.bare, "HEAD:refs/heads/main"},
	} {
		if err := git(ctx, r.work, args...); err != nil {
			return err
		}
	}
	return nil
}

// git runs git in dir with a fixed identity and default branch, ignoring
// the user's and the system's git configuration.
func git(ctx context.Context, dir string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if out, err := gitCmd(ctx, dir, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// gitCmd is the git command git runs.
func gitCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", append([]string{
		"-c", "user.name=slotbench", "-c", "user.email=slotbench@example.com",
		"-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false",
	}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_TERMINAL_PROMPT=0")
	return cmd
}

// tail is the end of a command's output, for error messages.
func tail(out string) string {
	if len(out) > 1500 {
		out = "…" + out[len(out)-1500:]
	}
	return out
}

func sum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}
