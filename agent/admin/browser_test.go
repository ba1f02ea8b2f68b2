package admin_test

// Browser tests: Debian's Chromium, driven by chromedp, uses the admin panel
// of a real slotagent behind a fake Coder app proxy that serves each app on
// its own subdomain of coder.localhost (Chromium resolves *.localhost to
// loopback and treats it as a secure context, as Coder's HTTPS apps are),
// rewrites Host the way an app proxy may (for the panel's agent-name URL it
// keeps it, as Coder's own proxy does: see admin.Hosts) and allows
// credentialed CORS between one owner's apps, as Coder's does.
//
// This test process never starts the reaper (chromedp and the helpers here
// wait for their children with exec.Cmd.Wait).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
)

// sampleApp answers its VERSION on every path but /health, /fail (a 500)
// and /crash (answers, then exits 1).
const sampleApp = `const VERSION = 'v1';
require('http').createServer((req, res) => {
  if (req.url === '/health') { res.end('ok'); return; }
  if (req.url === '/fail') { res.statusCode = 500; res.end('failed'); return; }
  if (req.url === '/crash') { res.end('bye', () => process.exit(1)); return; }
  res.setHeader('Content-Type', 'text/html');
  res.end('<h1>hello ' + VERSION + '</h1>');
}).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('sample ' + VERSION + ' listening <script>alert(1)</script> \x1b[31mred\x1b[0m'));
`

// attackPage is what a hostile app on a sibling subdomain serves: it tries
// to stop slot a through the user's browser, with a preflighted JSON
// request and with a simple form-encoded one.
const attackPage = `<!doctype html><html><body><pre id="out">running</pre><script>
const target = %q;
async function attack() {
  const results = [];
  try {
    const r = await fetch(target + 'api/processes/a/stop', {method: 'POST', credentials: 'include',
      headers: {'Content-Type': 'application/json'}, body: '{}'});
    results.push('json:' + r.status);
  } catch (e) { results.push('json:blocked'); }
  try {
    await fetch(target + 'api/processes/a/stop', {method: 'POST', credentials: 'include', mode: 'no-cors',
      headers: {'Content-Type': 'text/plain'}, body: '{}'});
    results.push('simple:sent');
  } catch (e) { results.push('simple:blocked'); }
  document.getElementById('out').textContent = results.join(' ');
}
attack();
</script></body></html>`

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// repo makes a bare repository whose main branch serves v1 and whose next
// branch serves v2.
func repo(t *testing.T) string {
	t.Helper()
	root, work := t.TempDir(), t.TempDir()
	bare := filepath.Join(root, "app.git")
	git := func(args ...string) {
		run(t, work, "git", append([]string{"-c", "user.name=T", "-c", "user.email=t@example.com"}, args...)...)
	}
	run(t, root, "git", "-c", "init.defaultBranch=main", "init", "-q", "--bare", bare)
	git("init", "-q", "-b", "main")
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package.json", `{"name":"sample","version":"1.0.0","scripts":{"start":"node server.js"}}`)
	write("server.js", sampleApp)
	git("add", "-A")
	git("commit", "-q", "-m", "v1")
	git("push", "-q", bare, "HEAD:refs/heads/main")
	write("server.js", strings.Replace(sampleApp, "'v1'", "'v2'", 1))
	git("commit", "-q", "-am", "v2")
	git("push", "-q", bare, "HEAD:refs/heads/next")
	return bare
}

// appProxy is a fake Coder subdomain app proxy on one loopback port.
type appProxy struct {
	port    int
	targets map[string]int // subdomain label → local port
	attack  string         // page served on evil--…
}

func (p *appProxy) host(label string) string {
	return fmt.Sprintf("%s.coder.localhost:%d", label, p.port)
}

func (p *appProxy) url(label string) string { return "http://" + p.host(label) + "/" }

func (p *appProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	label, _, _ := strings.Cut(r.Host, ".")
	// Coder lets one owner's apps call each other with credentials.
	if origin := r.Header.Get("Origin"); strings.Contains(origin, ".coder.localhost:") {
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		if r.Method == http.MethodOptions {
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST")
			w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if label == "evil--dev--alice" {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, p.attack)
		return
	}
	port, ok := p.targets[label]
	if !ok {
		http.Error(w, "no such app "+label, http.StatusBadGateway)
		return
	}
	target := &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(port)}
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target) // rewrites Host to 127.0.0.1:port, as an app proxy may
		if label == "admin--main--dev--alice" {
			pr.Out.Host = pr.In.Host // as Coder's own proxy does
		}
		pr.SetXForwarded()
	}}
	proxy.ServeHTTP(w, r)
}

// agentProcess runs the slotagent binary.
type agentProcess struct {
	cmd   *exec.Cmd
	done  chan struct{}
	ports map[string]int
	env   []string
}

func startAgent(t *testing.T, binary string, proxy *appProxy) *agentProcess {
	t.Helper()
	a := &agentProcess{ports: map[string]int{}, done: make(chan struct{})}
	a.ports["admin"] = testkit.FreePort(t)
	a.env = append(os.Environ(), "SLOTAGENT_DATA_DIR="+t.TempDir(), "ADMIN_PORT="+strconv.Itoa(a.ports["admin"]),
		"ADMIN_URL="+proxy.url("admin--dev--alice"), "SLOTAGENT_HEALTH_INTERVAL=200ms", "SLOTAGENT_DRAIN_TIMEOUT=3s",
		"SLOTAGENT_POSTGRES_ENABLED=false")
	proxy.targets["admin--dev--alice"] = a.ports["admin"]
	proxy.targets["admin--main--dev--alice"] = a.ports["admin"]
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		a.ports[s] = testkit.FreePort(t)
		label := "slot-" + s + "--dev--alice"
		proxy.targets[label] = a.ports[s]
		up := strings.ToUpper(s)
		a.env = append(a.env, "SLOT_"+up+"_PORT="+strconv.Itoa(a.ports[s]), "SLOT_"+up+"_URL="+proxy.url(label))
	}
	a.cmd = exec.Command(binary, "run")
	a.cmd.Env = a.env
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		_ = a.cmd.Process.Signal(os.Interrupt)
		select {
		case <-a.done:
		case <-time.After(15 * time.Second):
			_ = a.cmd.Process.Kill()
		}
	})
	testkit.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", a.ports["admin"]), 200, 10*time.Second)
	return a
}

// slotType asks the agent's API what slot a serves.
func (a *agentProcess) slotType(t *testing.T) (string, string) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/slots", a.ports["admin"]))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Slots []struct{ Name, Type, Release string } `json:"slots"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	return list.Slots[0].Type, list.Slots[0].Release
}

func browser(t *testing.T) context.Context {
	t.Helper()
	chrome, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	// Not a t.TempDir: Chromium's network service may still write to the
	// profile a moment after the browser has exited, so the profile is
	// removed until it stays gone, after the cleanup below stops Chromium.
	profile, err := os.MkdirTemp("", "slotagent-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if _, err := os.Stat(profile); errors.Is(err, fs.ErrNotExist) {
				return
			}
			_ = os.RemoveAll(profile)
		}
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	// Accept the confirmation dialogs of the panel's buttons; remember alerts.
	chromedp.ListenTarget(ctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			dialogs.add(string(d.Type) + ":" + d.Message)
			go func() { _ = chromedp.Run(ctx, page.HandleJavaScriptDialog(true)) }()
		}
	})
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// dialogs records every JavaScript dialog the browser opened.
var dialogs dialogLog

type dialogLog struct {
	mu   sync.Mutex
	seen []string
}

func (d *dialogLog) add(s string) {
	d.mu.Lock()
	d.seen = append(d.seen, s)
	d.mu.Unlock()
}

func (d *dialogLog) alerts() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, s := range d.seen {
		if strings.HasPrefix(s, "alert:") {
			out = append(out, s)
		}
	}
	return out
}

// waitText polls a selector's text until it contains want.
func waitText(t *testing.T, ctx context.Context, sel, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var text string
	for time.Now().Before(deadline) {
		// chromedp waits for a node that is not there: no longer than the
		// deadline.
		try, cancel := context.WithDeadline(ctx, deadline)
		err := chromedp.Run(try, chromedp.Text(sel, &text, chromedp.ByQuery, chromedp.NodeVisible))
		cancel()
		if err == nil && strings.Contains(text, want) {
			return text
		}
		time.Sleep(100 * time.Millisecond)
	}
	var log, errBox string
	_ = chromedp.Run(ctx, chromedp.Evaluate(`(document.getElementById('deploy-log')||{}).textContent || ''`, &log),
		chromedp.Evaluate(`(document.getElementById('error')||{}).textContent || ''`, &errBox))
	t.Fatalf("%s never contained %q (last: %q)\nerror box: %s\ndeploy log:\n%s", sel, want, text, errBox, log)
	return ""
}

func pageText(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	var text string
	if err := chromedp.Run(ctx, chromedp.Navigate(url), chromedp.Text("body", &text, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	return text
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("UPDATE_SCREENSHOTS") == "" {
		return
	}
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startPanel starts Chromium and a slotagent built from this tree behind
// the fake app proxy, and makes the sample repository.
func startPanel(t *testing.T) (ctx context.Context, agent *agentProcess, proxy *appProxy, bare string) {
	t.Helper()
	testkit.NeedNode(t)
	ctx = browser(t)
	binary := filepath.Join(t.TempDir(), "slotagent")
	run(t, ".", "go", "build", "-o", binary, "../cmd/slotagent")
	bare = repo(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy = &appProxy{port: ln.Addr().(*net.TCPAddr).Port, targets: map[string]int{}}
	proxy.attack = fmt.Sprintf(attackPage, proxy.url("admin--dev--alice"))
	srv := &http.Server{Handler: proxy}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ctx, startAgent(t, binary, proxy), proxy, bare
}

func TestPanelInARealBrowser(t *testing.T) {
	ctx, agent, proxy, bare := startPanel(t)
	admin := proxy.url("admin--dev--alice")

	// The dashboard lists the six rows.
	if err := chromedp.Run(ctx, chromedp.Navigate(admin), chromedp.WaitVisible("tbody tr", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll('tbody tr').length`, &rows)); err != nil || rows != 6 {
		t.Fatalf("dashboard rows: %d %v", rows, err)
	}

	// Deploy through the form and watch the log finish.
	if err := chromedp.Run(ctx,
		chromedp.Click(`a[href="./slots/a"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#deploy-form", chromedp.ByQuery),
		chromedp.SendKeys(`input[name=repo]`, bare, chromedp.ByQuery),
		chromedp.Click(`#deploy-form button[type=submit]`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#deploy-status", "succeeded", time.Minute)
	log := waitText(t, ctx, "#deploy-log", "deploy succeeded", 5*time.Second)
	if !strings.Contains(log, "==> health") {
		t.Fatalf("deploy log:\n%s", log)
	}
	// The git push card shows the slot's remote; its button copies the
	// two commands.
	commands := waitText(t, ctx, "#git-commands", "git remote add slot-a ", 5*time.Second)
	if err := chromedp.Run(ctx,
		cdpbrowser.GrantPermissions([]cdpbrowser.PermissionType{cdpbrowser.PermissionTypeClipboardReadWrite, cdpbrowser.PermissionTypeClipboardSanitizedWrite}).WithOrigin(strings.TrimSuffix(admin, "/")),
		chromedp.Click(`button[data-copy="git-commands"]`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, `button[data-copy="git-commands"]`, "Copied", 5*time.Second)
	var copied string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`navigator.clipboard.readText()`, &copied, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
		return p.WithAwaitPromise(true)
	})); err != nil || strings.TrimSpace(copied) != strings.TrimSpace(commands) || !strings.Contains(copied, "git push slot-a main") {
		t.Fatalf("copied %q (%v), the page shows %q", copied, err, commands)
	}

	// The app log shows hostile output as text: no script ran, no ANSI codes.
	waitText(t, ctx, "#app-log", "listening <script>alert(1)</script> red", 10*time.Second)
	screenshot(t, ctx, "screenshot-slot.png")

	// The dashboard row turns online as an app; the slot URL shows the app.
	if err := chromedp.Run(ctx, chromedp.Navigate(admin)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "tbody tr:nth-child(2)", "app", 10*time.Second)
	waitText(t, ctx, "tbody tr:nth-child(2)", "online", 10*time.Second)
	screenshot(t, ctx, "screenshot-dashboard.png")
	if text := pageText(t, ctx, proxy.url("slot-a--dev--alice")); !strings.Contains(text, "hello v1") {
		t.Fatalf("slot URL: %q", text)
	}

	// A second release from another branch, then roll back to the first
	// with its button; the panel is used through the agent-name URL form.
	adminWithAgent := proxy.url("admin--main--dev--alice")
	if err := chromedp.Run(ctx,
		chromedp.Navigate(adminWithAgent+"slots/a"),
		chromedp.WaitVisible("#deploy-form", chromedp.ByQuery),
		chromedp.SendKeys(`input[name=repo]`, bare, chromedp.ByQuery),
		chromedp.SendKeys(`input[name=ref]`, "next", chromedp.ByQuery),
		chromedp.Click(`#deploy-form button[type=submit]`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#deploy-status", "succeeded", time.Minute)
	if _, rel := agent.slotType(t); rel == "" {
		t.Fatal("no release after the second deploy")
	}
	if text := pageText(t, ctx, proxy.url("slot-a--dev--alice")); !strings.Contains(text, "hello v2") {
		t.Fatalf("slot URL after the second deploy: %q", text)
	}
	if err := chromedp.Run(ctx,
		chromedp.Navigate(adminWithAgent+"slots/a"),
		chromedp.WaitVisible("button[data-rollback]", chromedp.ByQuery),
		chromedp.Click("button[data-rollback]", chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#deploy-status", "succeeded", time.Minute)
	if text := pageText(t, ctx, proxy.url("slot-a--dev--alice")); !strings.Contains(text, "hello v1") {
		t.Fatalf("slot URL after rollback: %q", text)
	}

	// A bad env name gets a clear message in the page, shown as text.
	if err := chromedp.Run(ctx,
		chromedp.Navigate(admin+"slots/a"),
		chromedp.WaitVisible("#env-add", chromedp.ByQuery),
		chromedp.Click("#env-add", chromedp.ByQuery),
		chromedp.SendKeys(".env-name", `<img src=x onerror=alert(2)>`, chromedp.ByQuery),
		chromedp.SendKeys(".env-value", "v", chromedp.ByQuery),
		chromedp.Click(`#env-form button[type=submit]`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#error", `env name "<img src=x onerror=alert(2)>" is not valid`, 10*time.Second)

	// A page on a sibling subdomain cannot stop the slot.
	out := ""
	if err := chromedp.Run(ctx, chromedp.Navigate(proxy.url("evil--dev--alice"))); err != nil {
		t.Fatal(err)
	}
	out = waitText(t, ctx, "#out", "simple:", 10*time.Second)
	if !strings.Contains(out, "json:403") {
		t.Fatalf("cross-origin JSON request: %q", out)
	}
	time.Sleep(300 * time.Millisecond)
	if typ, _ := agent.slotType(t); typ != "app" {
		t.Fatalf("a sibling page stopped slot a (%s)", out)
	}

	// A page under a name the panel does not know that points to loopback
	// (as a DNS-rebinding page's name comes to) gets the refusal, not the panel.
	rebound := fmt.Sprintf("http://rebind.localhost:%d/", agent.ports["admin"])
	if text := pageText(t, ctx, rebound); !strings.Contains(text, "does not answer to host") {
		t.Fatalf("a page on another name that points to the admin port: %q", text)
	}

	// Stop with its button: back to the placeholder.
	if err := chromedp.Run(ctx,
		chromedp.Navigate(admin+"slots/a"),
		chromedp.WaitVisible(`button[data-action=stop]`, chromedp.ByQuery),
		chromedp.Click(`button[data-action=stop]`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#slot-type", "placeholder", 10*time.Second)
	if text := pageText(t, ctx, proxy.url("slot-a--dev--alice")); !strings.Contains(text, "ready for deployment") {
		t.Fatalf("slot URL after stop: %q", text)
	}
	if a := dialogs.alerts(); len(a) > 0 {
		t.Fatalf("hostile strings ran script: %v", a)
	}
}
