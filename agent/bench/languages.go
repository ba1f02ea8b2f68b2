package bench

import (
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

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
)

// Figures of the other languages (issue 24: a re-deploy with unchanged
// dependencies of a Go and of a Python app within the Node target, 3 s
// plus the app's boot; static serving beside the old Node placeholder and
// `python3 -m http.server`).
const (
	figRedeployGo     = "re-deploy of a Go app, unchanged go.sum: `slotagent deploy a --dir … --wait` → slot serving the new release"
	figRedeployPython = "re-deploy of a Python app, unchanged requirements.txt (virtualenv reused): the same"
	figStatic32       = "static site: `GET /index.html` through the slot (the agent serves the folder), 32 connections"
	figStaticNode32   = "… the old stack's Node placeholder (`node placeholder.js`, its page from memory), same load"
	figStaticPy32     = "… `python3 -m http.server` on the same file, same load"
)

// pythonApp is the Python sample: a WSGI app of the standard library that
// imports the wheel the run's own package index serves.
const pythonApp = `import os, slotdemo
from wsgiref.simple_server import make_server, WSGIRequestHandler

class Quiet(WSGIRequestHandler):
    def log_request(self, *args):
        pass

def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [(slotdemo.greeting() + ' ' + os.environ.get('VERSION', '')).encode()]

make_server('127.0.0.1', int(os.environ['PORT']), app, handler_class=Quiet).serve_forever()
`

// languages measures the re-deploys of a Go and a Python app and static
// serving, each in slot a of one fresh agent.
func (b *bench) languages(ctx context.Context) []Row {
	target := &Target{On: Median, Max: ms(redeployBudget)}
	rows := []Row{b.redeployLanguage(ctx, figRedeployGo, target, b.goApp), b.redeployLanguage(ctx, figRedeployPython, target, b.pythonApp)}
	return append(rows, b.staticServing(ctx)...)
}

// langApp prepares an app folder and returns it with the env its deploys
// need, the body it answers at a VERSION, and a cleanup.
type langApp func(ctx context.Context) (dir string, env []string, body func(string) string, stop func(), err error)

// redeployLanguage deploys an app once (untimed: it fills the caches),
// then times b.n.redeploys re-deploys of it with a new VERSION each.
func (b *bench) redeployLanguage(ctx context.Context, figure string, target *Target, mk langApp) Row {
	dir, env, body, stop, err := mk(ctx)
	if err != nil {
		return failed(figure, target, err)
	}
	defer stop()
	a, err := b.newAgent()
	if err != nil {
		return failed(figure, target, err)
	}
	if err := a.startReady(); err != nil {
		return failed(figure, target, err)
	}
	defer b.stop(a)
	deploy := func(version string) []string {
		args := []string{"deploy", appSlot, "--dir", dir, "--wait", "--env", "VERSION=" + version}
		for _, kv := range env {
			args = append(args, "--env", kv)
		}
		return args
	}
	b.logf("%s: first deploy (not timed)", figure)
	if out, err := b.deployCmd(ctx, a, firstDeployTimeout, deploy("v1")...); err != nil {
		return failed(figure, target, fmt.Errorf("first deploy: %w\n%s%s", err, tail(out), a.logTail()))
	}
	var serving []time.Duration
	var windows [][2]time.Time
	for i := range b.n.redeploys {
		v := fmt.Sprintf("v%d", i+2)
		res, err := b.timedDeploy(ctx, a, false, body(v), deploy(v)...)
		if err != nil {
			return failed(figure, target, fmt.Errorf("re-deploy %s: %w%s", v, err, a.logTail()))
		}
		if strings.Contains(res.out, ".zip") || strings.Contains(res.out, "-m venv") {
			return failed(figure, target, fmt.Errorf("re-deploy %s downloaded modules or made a virtualenv again:\n%s", v, tail(res.out)))
		}
		serving = append(serving, res.serving)
		windows = append(windows, [2]time.Time{res.start, res.start.Add(res.wall)})
	}
	note := fmt.Sprintf("%d re-deploys of the same code with a new VERSION env; exec → the slot answers it", len(serving))
	client := newClient()
	defer client.CloseIdleConnections()
	order, stages, err := stageTimes(client, a, windows)
	if err != nil {
		return failed(figure, target, fmt.Errorf("read the deploy records: %w", err))
	}
	// The app's boot is the health stage: start → its first answer.
	boot := Summarize(stages["health"]).Median
	target = &Target{On: Median, Max: ms(redeployBudget) + boot}
	parts := make([]string, 0, len(order))
	for _, name := range order {
		parts = append(parts, fmt.Sprintf("%s %s ms", name, number(Summarize(stages[name]).Median)))
	}
	note += fmt.Sprintf("; target = 3 s + the app's boot (the health stage, start → first answer: %s ms); stage medians: %s", number(boot), strings.Join(parts, ", "))
	return ours(figure, "ms", Summarize(msAll(serving)), target, note)
}

// goApp is testkit's Go sample (a dependency from the Go module proxy),
// built with the machine's Go build cache (so the untimed first deploy
// does not compile the standard library) and the data dir's module cache.
func (b *bench) goApp(ctx context.Context) (string, []string, func(string) string, func(), error) {
	if _, err := exec.LookPath("go"); err != nil {
		return "", nil, nil, nil, errors.New("go is not installed")
	}
	files, err := testkit.GoAppFiles()
	if err != nil {
		return "", nil, nil, nil, err
	}
	dir, err := b.writeFiles("go-app-", files)
	if err != nil {
		return "", nil, nil, nil, err
	}
	cache, err := exec.CommandContext(ctx, "go", "env", "GOCACHE").Output()
	if err != nil {
		return "", nil, nil, nil, fmt.Errorf("go env GOCACHE: %w", err)
	}
	env := []string{"GOCACHE=" + strings.TrimSpace(string(cache))}
	return dir, env, func(v string) string { return "go " + v + " 36" }, func() {}, nil
}

// pythonApp is a WSGI app importing a wheel from the run's own package
// index (`python3 -m http.server`, given as PIP_INDEX_URL).
func (b *bench) pythonApp(ctx context.Context) (string, []string, func(string) string, func(), error) {
	if err := exec.CommandContext(ctx, "python3", "-c", "import venv, ensurepip").Run(); err != nil {
		return "", nil, nil, nil, errors.New("python3 with venv is not installed")
	}
	index, err := os.MkdirTemp(b.root, "pyindex-")
	if err != nil {
		return "", nil, nil, nil, err
	}
	if err := testkit.WritePythonIndex(index, map[string]string{"slotdemo": "def greeting():\n    return 'hello from slotdemo'\n"}); err != nil {
		return "", nil, nil, nil, err
	}
	url, stop, err := b.serveFolder(ctx, index)
	if err != nil {
		return "", nil, nil, nil, err
	}
	dir, err := b.writeFiles("py-app-", map[string]string{"requirements.txt": "slotdemo==1.0\n", "Procfile": "web: python3 app.py\n", "app.py": pythonApp})
	if err != nil {
		stop()
		return "", nil, nil, nil, err
	}
	return dir, []string{"PIP_INDEX_URL=" + url + "simple/"}, func(v string) string { return "hello from slotdemo " + v }, stop, nil
}

// writeFiles writes files into a new folder of the run.
func (b *bench) writeFiles(prefix string, files map[string]string) (string, error) {
	dir, err := os.MkdirTemp(b.root, prefix)
	if err != nil {
		return "", err
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// serveFolder runs `python3 -m http.server` on dir at a free loopback port
// and returns its URL (with a trailing slash) and how to stop it.
func (b *bench) serveFolder(ctx context.Context, dir string) (string, func(), error) {
	return b.serveProcess(ctx, nil, func(port int) []string {
		return []string{"python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, strconv.Itoa(port)}
	})
}

// serveProcess starts the server argv makes for a free port, with env
// and PORT added, waits until it answers GET /, and returns its URL and a stop.
func (b *bench) serveProcess(ctx context.Context, env []string, argv func(port int) []string) (string, func(), error) {
	port, err := testkit.FreePortErr()
	if err != nil {
		return "", nil, err
	}
	args := argv(port)
	out, err := os.CreateTemp(b.root, "server-*.log")
	if err != nil {
		return "", nil, err
	}
	defer out.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append(os.Environ(), env...), "PORT="+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s: %w", args[0], err)
	}
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if _, err := testkit.WaitHTTPErr(url, 200, 30*time.Second); err != nil {
		stop()
		said, _ := os.ReadFile(out.Name())
		return "", nil, fmt.Errorf("%s did not answer: %w\n%s", strings.Join(args, " "), err, tail(string(said)))
	}
	return url, stop, ctx.Err()
}

// staticServing measures GET /index.html of a static site in slot a (the
// agent serves it), the old Node placeholder and python3 -m http.server on
// the same file, taking turns in slices as the proxy rows do.
func (b *bench) staticServing(ctx context.Context) []Row {
	fail := func(err error) []Row {
		return []Row{failed(figStatic32, nil, err), failed(figStaticNode32, nil, err), failed(figStaticPy32, nil, err)}
	}
	page := "<!doctype html><html><head><title>Slot a</title></head><body><h1>Slot a</h1><p>Nothing deployed yet.</p></body></html>"
	site, err := b.writeFiles("site-", map[string]string{"index.html": page})
	if err != nil {
		return fail(err)
	}
	a, err := b.newAgent()
	if err != nil {
		return fail(err)
	}
	if err := a.startReady(); err != nil {
		return fail(err)
	}
	defer b.stop(a)
	if out, err := b.deployCmd(ctx, a, deployTimeout, "deploy", appSlot, "--dir", site, "--wait"); err != nil {
		return fail(fmt.Errorf("deploy the site: %w\n%s%s", err, tail(out), a.logTail()))
	}
	pyURL, stopPy, err := b.serveFolder(ctx, site)
	if err != nil {
		return fail(err)
	}
	defer stopPy()
	js, err := b.writeFiles("placeholder-", map[string]string{"placeholder.js": placeholderJS})
	if err != nil {
		return fail(err)
	}
	nodeURL, stopNode, err := b.serveProcess(ctx, []string{"SLOT_NAME=a"}, func(port int) []string {
		return []string{"node", filepath.Join(js, "placeholder.js")}
	})
	if err != nil {
		return fail(err)
	}
	defer stopNode()
	targets := []struct{ name, url string }{{"slot", a.url(appSlot, "/index.html")}, {"node", nodeURL}, {"python", pyURL + "index.html"}}
	slice := b.n.loadDuration / loadSlices
	results := map[string]loadResult{}
	for i := range loadSlices {
		for _, t := range targets {
			b.logf("static: %s, slice %d of %d (%s)", t.name, i+1, loadSlices, slice)
			res, err := runLoad(ctx, t.url, 32, slice)
			if err != nil {
				return fail(fmt.Errorf("%s: %w", t.name, err))
			}
			results[t.name] = results[t.name].add(res)
		}
	}
	rps := func(name string) Stat { r := results[name]; return OnlyMedian(len(r.lat), r.rps()) }
	how := func(name string) string {
		r := results[name]
		return fmt.Sprintf("p50 %s ms, %d failed; %s in %d slices taking turns with the other two, 32 workers on keep-alive connections", number(Summarize(msAll(r.lat)).Median), r.failed, b.n.loadDuration, loadSlices)
	}
	return []Row{
		ours(figStatic32, unitRPS, rps("slot"), nil, how("slot")+"; slot port → relay → the agent's file server"),
		ours(figStaticNode32, unitRPS, rps("node"), nil, how("node")+"; straight to node, no proxy"),
		ours(figStaticPy32, unitRPS, rps("python"), nil, how("python")),
	}
}
