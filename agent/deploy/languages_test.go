package deploy

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/reaper"
)

// deployReq deploys req into slot a and waits for it to succeed.
func (e *engine) deployReq(t *testing.T, req Request) Record {
	t.Helper()
	rec, err := e.d.Deploy("a", req)
	if err != nil {
		t.Fatal(err)
	}
	rec = e.wait(t, rec.ID)
	if rec.Status != Succeeded {
		log, _ := os.ReadFile(rec.Log)
		t.Fatalf("deploy %s: %s\n%s", rec.Status, rec.Error, log)
	}
	return rec
}

// get answers GET path on the slot.
func (e *engine) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(e.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDeployGoApp: a Go module with a dependency from the Go module proxy
// is built and served, started by the Procfile naming its binary (bin/ is
// on its PATH); a redeploy with the same go.sum downloads nothing.
func TestDeployGoApp(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not installed")
	}
	e := newEngine(t, func(c *Config) { c.Health.ListenTimeout = 60 * time.Second })
	e.slow = 5 * time.Minute
	files := testkit.GoApp(t)
	files["Procfile"] = "web: hello\n"
	app := testkit.WriteTree(t, files)
	// The machine's build cache (the standard library compiled already;
	// the module cache stays the data dir's own, empty at first).
	gocache, err := reaper.Output(t.Context(), exec.Command("go", "env", "GOCACHE"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VERSION": "v1", "GOCACHE": strings.TrimSpace(string(gocache))}
	rec := e.deployReq(t, Request{Dir: app, Env: env})
	if rec.Language != "go" || !strings.Contains(rec.Plan, "build: go build -trimpath -o bin/hello .") || !strings.Contains(rec.Plan, "start: hello") {
		t.Fatalf("record: language %q plan %q", rec.Language, rec.Plan)
	}
	if _, body := e.get(t, "/"); body != "go v1 36" {
		t.Fatalf("serves %q", body)
	}
	first, _ := os.ReadFile(rec.Log)
	if !strings.Contains(string(first), "github.com/google/uuid/@v/v1.6.0.zip") {
		t.Fatalf("the first deploy fetched nothing from the module proxy:\n%s", first)
	}

	start := time.Now()
	env["VERSION"] = "v2"
	rec = e.deployReq(t, Request{Dir: app, Env: env})
	t.Logf("redeploy with unchanged go.sum: %s", time.Since(start).Round(time.Millisecond))
	second, _ := os.ReadFile(rec.Log)
	if strings.Contains(string(second), ".zip") || strings.Contains(string(second), "# get ") {
		t.Fatalf("the redeploy downloaded modules again:\n%s", second)
	}
	if _, body := e.get(t, "/"); body != "go v2 36" {
		t.Fatalf("after the redeploy: %q", body)
	}
}

// TestDeployPythonApp: pip installs a wheel from the test's own package
// index (PIP_INDEX_URL from the slot's env, seen by the install) into a
// virtualenv, and the Procfile's WSGI app imports it; a redeploy with the
// same requirements.txt reuses the virtualenv.
func TestDeployPythonApp(t *testing.T) {
	testkit.NeedPython(t)
	index := testkit.PythonIndex(t, map[string]string{"slotdemo": "def greeting():\n    return 'hello from slotdemo'\n"})
	e := newEngine(t, func(c *Config) { c.Health.ListenTimeout = 30 * time.Second })
	e.slow = 5 * time.Minute
	app := testkit.WriteTree(t, pythonApp("slotdemo==1.0\n"))
	env := map[string]string{"PIP_INDEX_URL": index, "VERSION": "v1"}
	rec := e.deployReq(t, Request{Dir: app, Env: env})
	if rec.Language != "python" || !strings.Contains(rec.Plan, "pip install") {
		t.Fatalf("record: %q %q", rec.Language, rec.Plan)
	}
	if _, body := e.get(t, "/"); body != "hello from slotdemo v1" {
		t.Fatalf("serves %q", body)
	}
	env["VERSION"] = "v2"
	start := time.Now()
	rec = e.deployReq(t, Request{Dir: app, Env: env})
	t.Logf("redeploy with unchanged requirements.txt: %s", time.Since(start).Round(time.Millisecond))
	log, _ := os.ReadFile(rec.Log)
	if !strings.Contains(string(log), "reusing the virtualenv") || strings.Contains(string(log), "-m venv") {
		t.Fatalf("the redeploy did not reuse the virtualenv:\n%s", log)
	}
	if _, body := e.get(t, "/"); body != "hello from slotdemo v2" {
		t.Fatalf("after the redeploy: %q", body)
	}
}

// pythonApp is a WSGI app greeting with the slotdemo package of the
// test's index and its VERSION env value.
func pythonApp(requirements string) map[string]string {
	return map[string]string{
		"requirements.txt": requirements,
		"Procfile":         "web: python3 app.py\n",
		"app.py": `import os, slotdemo
from wsgiref.simple_server import make_server

def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [(slotdemo.greeting() + ' ' + os.environ.get('VERSION', '')).encode()]

make_server('127.0.0.1', int(os.environ['PORT']), app).serve_forever()
`,
	}
}

// TestOldVirtualenvsArePruned: a virtualenv stays while a kept release
// uses it (a rollback needs it) and goes with the last such release;
// the one serving stays.
func TestOldVirtualenvsArePruned(t *testing.T) {
	testkit.NeedPython(t)
	index := testkit.PythonIndex(t, map[string]string{"slotdemo": "def greeting():\n    return 'hello from slotdemo'\n"})
	e := newEngine(t, func(c *Config) { c.Health.ListenTimeout = 30 * time.Second; c.KeepReleases = 2 })
	e.slow = 5 * time.Minute
	env := map[string]string{"PIP_INDEX_URL": index}
	venvs := func() []string {
		dirs, _ := filepath.Glob(filepath.Join(e.data, "cache", "python", "venvs", "*", ".slotagent-done"))
		return dirs
	}
	e.deployReq(t, Request{Dir: testkit.WriteTree(t, pythonApp("slotdemo==1.0\n")), Env: env})
	first := venvs()
	if len(first) != 1 {
		t.Fatalf("virtualenvs after the first deploy: %q", first)
	}
	// Last used long before any deploy under way could have started.
	old := time.Now().Add(-2 * e.d.cfg.Timeout)
	if err := os.Chtimes(first[0], old, old); err != nil {
		t.Fatal(err)
	}
	second := testkit.WriteTree(t, pythonApp("slotdemo==1.0\n# another dependency set\n"))
	e.deployReq(t, Request{Dir: second, Env: env})
	if got := venvs(); len(got) != 2 {
		t.Fatalf("the first release is kept, so is its virtualenv: %q", got)
	}
	e.deployReq(t, Request{Dir: second, Env: map[string]string{"PIP_INDEX_URL": index, "VERSION": "v3"}})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got := venvs()
		if len(got) == 1 && got[0] != first[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first release was pruned, its virtualenv %s was not: %q", first[0], got)
		}
	}
	if _, body := e.get(t, "/"); body != "hello from slotdemo v3" {
		t.Fatalf("serves %q", body)
	}
}

// TestDeployStaticSites: a site at the root is served by the agent (no
// process); a site built by `npm run build` into dist/ likewise; dotfiles
// stay hidden.
func TestDeployStaticSites(t *testing.T) {
	e := newEngine(t, nil)
	root := testkit.WriteTree(t, map[string]string{"index.html": "<h1>root site</h1>", ".env": "SECRET=1"})
	rec := e.deployReq(t, Request{Dir: root})
	if rec.Language != "static" {
		t.Fatalf("language %q", rec.Language)
	}
	if code, body := e.get(t, "/"); code != 200 || body != "<h1>root site</h1>" {
		t.Fatalf("root site: %d %q", code, body)
	}
	if code, _ := e.get(t, "/.env"); code != 404 {
		t.Fatalf("GET /.env: %d", code)
	}
	if st := e.slot.Status(); st.Type != "static" || st.Process != nil {
		t.Fatalf("status: %+v", st)
	}

	built := testkit.WriteTree(t, map[string]string{
		"package.json": `{"name":"site","scripts":{"build":"node build.js"}}`,
		"build.js":     "require('fs').mkdirSync('dist', {recursive: true}); require('fs').writeFileSync('dist/index.html', '<h1>built ' + process.env.SITE_TITLE + '</h1>');\n",
	})
	rec = e.deployReq(t, Request{Dir: built, Env: map[string]string{"SITE_TITLE": "by npm"}, SPA: true})
	if rec.Language != "node" || !strings.Contains(rec.Plan, "serves: the build's output") {
		t.Fatalf("record: %q %q", rec.Language, rec.Plan)
	}
	if code, body := e.get(t, "/"); code != 200 || body != "<h1>built by npm</h1>" {
		t.Fatalf("built site: %d %q", code, body)
	}
	if code, body := e.get(t, "/some/route"); code != 200 || body != "<h1>built by npm</h1>" {
		t.Fatalf("SPA route: %d %q", code, body)
	}
}
