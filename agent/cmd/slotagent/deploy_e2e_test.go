package main

// End-to-end tests of deploys: real git repositories (local bare repos and
// smart HTTP through git http-backend), a real npm app with a dependency
// from the registry, real processes.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/procgroup"
	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/state"
)

// sampleServer is the sample app: it uses its npm dependency (ms) and
// reports its VERSION constant and env values.
const sampleServer = `const http = require('http');
const ms = require('ms');
const VERSION = 'v1';
http.createServer((req, res) => {
  if (req.url === '/health') { res.end('ok'); return; }
  if (req.url.startsWith('/env/')) { res.end(process.env[req.url.slice(5)] || '(unset)'); return; }
  res.end('hello ' + VERSION + ' ' + ms(60000));
}).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('sample listening on ' + process.env.PORT));
`

// gitRun runs git in dir.
func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	out, err := reaper.Output(context.Background(), cmd)
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// sampleRepo makes a bare repository (root/app.git) holding the sample app
// and returns it with the work tree that pushes to it.
func sampleRepo(t *testing.T, root string) (bare, work string) {
	t.Helper()
	testkit.NeedNode(t)
	bare, work = filepath.Join(root, "app.git"), t.TempDir()
	gitRun(t, root, "init", "-q", "--bare", bare)
	gitRun(t, work, "init", "-q")
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "buildpack", "testdata", "app-ms", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(work, f), string(b))
	}
	writeFile(t, filepath.Join(work, "server.js"), sampleServer)
	writeFile(t, filepath.Join(work, ".gitignore"), "node_modules/\n")
	commitAndPush(t, work, bare, "v1")
	return bare, work
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func commitAndPush(t *testing.T, work, bare, msg string) {
	t.Helper()
	gitRun(t, work, "add", "-A")
	gitRun(t, work, "commit", "-q", "-m", msg)
	gitRun(t, work, "push", "-q", bare, "HEAD:refs/heads/main")
}

// setVersion rewrites the sample's VERSION constant.
func setVersion(t *testing.T, work, version string) {
	t.Helper()
	writeFile(t, filepath.Join(work, "server.js"), strings.Replace(sampleServer, "'v1'", "'"+version+"'", 1))
}

// servingV1WithV2Pushed starts an agent whose slot a serves the sample at
// v1 (deployed with fastDeploys), with v2 pushed to the sample's
// repository; it returns the agent and the repository.
func servingV1WithV2Pushed(t *testing.T) (*agent, string) {
	t.Helper()
	a := newAgent(t)
	bare, work := sampleRepo(t, t.TempDir())
	a.start(fastDeploys...)
	a.mustCLI("deploy", "a", "--repo", bare, "--wait")
	setVersion(t, work, "v2")
	commitAndPush(t, work, bare, "v2")
	return a, bare
}

// fastDeploys makes failing health gates quick.
var fastDeploys = []string{"SLOTAGENT_HEALTH_INTERVAL=100ms", "SLOTAGENT_HEALTH_ATTEMPTS=5", "SLOTAGENT_HEALTH_LISTEN_TIMEOUT=4s", "SLOTAGENT_DRAIN_TIMEOUT=5s"}

// load sends requests to url in a loop until stop is called, and reports
// how many were sent and failed and the longest gap between successes.
type load struct {
	sent, failed int
	longestGap   time.Duration
	mu           sync.Mutex // guards bodies while the load runs
	bodies       map[string]int
	stop         func()
}

// waitBody waits until the load has had body as an answer.
func (l *load) waitBody(t *testing.T, body string) {
	t.Helper()
	seen := func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.bodies[body] > 0 }
	for deadline := time.Now().Add(30 * time.Second); !seen(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no answer %q within 30s", body)
		}
	}
}

func startLoad(url string) *load {
	l := &load{bodies: map[string]int{}}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 5 * time.Second}
		last := time.Now()
		for {
			select {
			case <-quit:
				return
			default:
			}
			l.sent++
			resp, err := client.Get(url)
			if err != nil {
				l.failed++
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				l.failed++
				continue
			}
			l.mu.Lock()
			l.bodies[string(b)]++
			l.mu.Unlock()
			if gap := time.Since(last); gap > l.longestGap {
				l.longestGap = gap
			}
			last = time.Now()
		}
	}()
	l.stop = func() { close(quit); wg.Wait() }
	return l
}

func (a *agent) apiJSON(path string, v any) {
	a.t.Helper()
	resp, err := http.Get(a.url("admin", path))
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		a.t.Fatalf("%s: %v", path, err)
	}
}

func (a *agent) mustCLI(args ...string) string {
	a.t.Helper()
	out, errOut, code := a.cli(args...)
	if code != 0 {
		a.t.Fatalf("slotagent %v: exit %d\n%s%s\nagent log:\n%s", args, code, out, errOut, a.stderr())
	}
	return out
}

func TestDeployRedeployRollbackAndEnv(t *testing.T) {
	a := newAgent(t)
	bare, work := sampleRepo(t, t.TempDir())
	a.start(fastDeploys...)

	out := a.mustCLI("deploy", "a", "--repo", bare, "--env", "API_TOKEN=tok-secret-123", "--wait")
	if !strings.Contains(out, "succeeded") || !strings.Contains(out, "npm ci") {
		t.Fatalf("first deploy output:\n%s", out)
	}
	if code, b := body(t, a.url("a", "/")); code != 200 || b != "hello v1 1m" {
		t.Fatalf("after deploy: %d %q", code, b)
	}
	if _, b := body(t, a.url("a", "/env/API_TOKEN")); b != "tok-secret-123" {
		t.Fatalf("app env: %q", b)
	}

	// Re-deploy with unchanged dependencies while a client keeps asking.
	// Its commit message quotes the secret: the record shows it masked.
	setVersion(t, work, "v2")
	commitAndPush(t, work, bare, "v2 reads tok-secret-123 from the env\n\nthe body is not recorded")
	l := startLoad(a.url("a", "/"))
	l.waitBody(t, "hello v1 1m")
	start := time.Now()
	out = a.mustCLI("deploy", "a", "--repo", bare, "--ref", "main", "--wait")
	redeploy := time.Since(start)
	l.waitBody(t, "hello v2 1m")
	l.stop()
	if !strings.Contains(out, "reusing node_modules") {
		t.Fatalf("re-deploy did not reuse node_modules:\n%s", out)
	}
	if l.failed != 0 || l.bodies["hello v1 1m"] == 0 || l.bodies["hello v2 1m"] == 0 {
		t.Fatalf("during re-deploy: sent %d failed %d bodies %v", l.sent, l.failed, l.bodies)
	}
	t.Logf("re-deploy took %s; %d requests during it, %d failed, longest gap %s", redeploy, l.sent, l.failed, l.longestGap)

	var rels admin.ReleaseList
	a.apiJSON("/api/slots/a/releases", &rels)
	if len(rels.Releases) != 2 || !rels.Releases[0].Current || rels.Releases[1].Env["API_TOKEN"] != "********" {
		t.Fatalf("releases: %+v", rels)
	}

	// Rollback, again under load.
	l = startLoad(a.url("a", "/"))
	l.waitBody(t, "hello v2 1m")
	a.mustCLI("rollback", "a", "--wait")
	l.waitBody(t, "hello v1 1m")
	l.stop()
	if _, b := body(t, a.url("a", "/")); b != "hello v1 1m" {
		t.Fatalf("after rollback: %q", b)
	}
	if l.failed != 0 {
		t.Fatalf("during rollback: sent %d failed %d", l.sent, l.failed)
	}
	t.Logf("rollback: %d requests, %d failed, longest gap %s", l.sent, l.failed, l.longestGap)

	// Env changes are releases: set, then roll back to the env before
	// (on the code rolled back to, not the code rolled away from).
	out = a.mustCLI("env", "a", "set", "GREETING=hola", "--wait")
	if !strings.Contains(out, "GREETING=********") || strings.Contains(out, "hola") {
		t.Fatalf("env set output:\n%s", out)
	}
	if _, b := body(t, a.url("a", "/env/GREETING")); b != "hola" {
		t.Fatalf("env release: %q", b)
	}
	a.mustCLI("rollback", "a", "--wait")
	if _, b := body(t, a.url("a", "/env/GREETING")); b != "(unset)" {
		t.Fatalf("rollback did not restore the env: %q", b)
	}
	if _, b := body(t, a.url("a", "/")); b != "hello v1 1m" {
		t.Fatalf("the rollback of the env change serves %q, not the code it changed", b)
	}
	if out := a.mustCLI("env", "a"); out != "API_TOKEN=********\n" {
		t.Fatalf("env after rollback: %q", out)
	}
	a.apiJSON("/api/slots/a/releases", &rels)
	if len(rels.Releases) != 3 {
		t.Fatalf("kept releases: %d, want 3 (pruned)", len(rels.Releases))
	}
	dirs, _ := os.ReadDir(filepath.Join(a.dataDir, "slots", "a", "releases"))
	if len(dirs) > 3 {
		t.Fatalf("release folders on disk: %d", len(dirs))
	}

	// Every record says where it was asked for (here: the command line)
	// and the subject of its commit, masked; a rollback's and an env
	// change's are those of the release's commit.
	var list admin.DeployList
	a.apiJSON("/api/slots/a/deploys", &list)
	var got []string
	for _, r := range slices.Backward(list.Deploys) {
		got = append(got, string(r.Trigger)+" "+r.Origin+" "+r.Subject)
	}
	want := []string{"deploy cli v1", "deploy cli v2 reads ******** from the env", "rollback cli v1", "env cli v1", "rollback cli v1"}
	if !slices.Equal(got, want) {
		t.Errorf("records (trigger, origin, subject):\n%q\nwant\n%q", got, want)
	}

	// The secret values never left the agent.
	for _, path := range []string{"/api/slots", "/api/processes", "/api/config", "/api/slots/a/releases", "/api/slots/a/env", "/api/slots/a/deploys"} {
		if _, b := body(t, a.url("admin", path)); strings.Contains(b, "tok-secret-123") || strings.Contains(b, "hola") {
			t.Errorf("%s leaks a secret", path)
		}
	}
	assertNoSecretInLogs(t, a.dataDir, "tok-secret-123", "hola")
}

// assertNoSecretInLogs reads every log file under dataDir.
func assertNoSecretInLogs(t *testing.T, dataDir string, secrets ...string) {
	t.Helper()
	n := 0
	_ = filepath.WalkDir(dataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".log") {
			return nil
		}
		n++
		b, _ := os.ReadFile(path)
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("%s contains a secret", path)
			}
		}
		return nil
	})
	if n < 4 {
		t.Fatalf("only %d log files found", n)
	}
}

func TestFailedDeploysLeaveTheOldReleaseServing(t *testing.T) {
	a, bare := servingV1WithV2Pushed(t)
	before := a.processes().Processes[1]

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown branch", []string{"--repo", bare, "--ref", "nope"}, `"nope" not found`},
		{"clone failure", []string{"--repo", filepath.Join(t.TempDir(), "missing.git")}, "missing.git"},
		{"build failure", []string{"--repo", bare, "--build", "echo compiling; exit 3"}, "exit code 3"},
		{"start exits", []string{"--repo", bare, "--start", "node -e 'process.exit(4)'"}, "start command exited (exit code 4)"},
		{"never listens", []string{"--repo", bare, "--start", "node -e 'console.log(\"booting\"); setInterval(() => {}, 1000)'"}, "app did not listen on PORT="},
		{"health fails", []string{"--repo", bare, "--start", `node -e "require('http').createServer((q,s)=>{s.statusCode=500;s.end()}).listen(process.env.PORT)"`}, "health check failed 5 times"},
	}
	for _, c := range cases {
		l := startLoad(a.url("a", "/"))
		out, errOut, code := a.cli(append([]string{"deploy", "a", "--wait"}, c.args...)...)
		l.stop()
		if code != 1 || !strings.Contains(errOut, "failed") || !strings.Contains(out+errOut, c.want) {
			t.Errorf("%s: exit %d, want a failure saying %q:\n%s%s", c.name, code, c.want, out, errOut)
		}
		if l.failed != 0 || l.bodies["hello v1 1m"] == 0 {
			t.Errorf("%s: the old release did not keep serving: %+v", c.name, l)
		}
	}
	after := a.processes().Processes[1]
	if after.Release != before.Release || after.PID != before.PID || after.Status != "online" {
		t.Fatalf("slot a changed: before %+v after %+v", before, after)
	}
	st, err := state.Load(filepath.Join(a.dataDir, "state.json"))
	if err != nil || st.Slots["a"].Current != before.Release || len(st.Slots["a"].Releases) != 1 {
		t.Fatalf("state changed: %+v %v", st.Slots["a"], err)
	}
	if procs := a.processes(); procs.Total != 6 {
		t.Fatalf("a failed release's process is still supervised: %+v", procs)
	}
	dirs, _ := os.ReadDir(filepath.Join(a.dataDir, "slots", "a", "releases"))
	if len(dirs) != 1 {
		t.Fatalf("failed releases left folders: %d", len(dirs))
	}
	var list admin.DeployList
	a.apiJSON("/api/slots/a/deploys", &list)
	if len(list.Deploys) != len(cases)+1 || list.Deploys[0].Status != deploy.Failed || list.Deploys[0].Error == "" {
		t.Fatalf("deploy records: %+v", list.Deploys)
	}
	if !strings.Contains(list.Deploys[1].Error, "process.env.PORT") || !strings.Contains(list.Deploys[1].Error, "last lines") {
		t.Fatalf("never-listens record: %q", list.Deploys[1].Error)
	}
}

func TestDeployRefusesBadInputAndChangesNothing(t *testing.T) {
	a := newAgent(t)
	bare, _ := sampleRepo(t, t.TempDir())
	a.start(fastDeploys...)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "z", "--repo", bare}, `unknown slot "z"`},
		{[]string{"deploy", "a", "--repo=--upload-pack=touch /tmp/pwned"}, `must not start with "-"`},
		{[]string{"deploy", "a", "--repo", "ext::sh -c touch% /tmp/pwned"}, "remote helper, which can run commands"},
		{[]string{"deploy", "a", "--repo", bare, "--ref", "a..b"}, `invalid ref "a..b"`},
		{[]string{"deploy", "a", "--repo", bare, "--env", "1BAD=x"}, `env name "1BAD" is not valid`},
		{[]string{"deploy", "a", "--repo", bare, "--env", "NOEQUALS"}, "expected K=V"},
		{[]string{"deploy", "a", "--dir", filepath.Join(t.TempDir(), "nope")}, "does not exist"},
		{[]string{"deploy", "a", "--repo", bare, "--start", "  "}, "empty start command"},
		{[]string{"deploy", "a"}, "give a repository"},
		{[]string{"env", "a", "set", "lower-case=1"}, "is not valid"},
		{[]string{"rollback", "a"}, "no earlier release"},
		{[]string{"rollback", "a", "r-unknown"}, `no release "r-unknown"`},
	}
	for _, c := range cases {
		out, errOut, code := a.cli(c.args...)
		if code != 1 || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: exit %d, want one line with %q:\n%s%s", c.args, code, c.want, out, errOut)
		}
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Fatal("a repo URL ran a command")
	}
	var list admin.DeployList
	a.apiJSON("/api/slots/a/deploys", &list)
	if len(list.Deploys) != 0 {
		t.Fatalf("refused requests made deploy records: %+v", list.Deploys)
	}
	if p := a.processes().Processes[1]; p.Type != "placeholder" {
		t.Fatalf("slot a changed: %+v", p)
	}

	// A folder with no app in it and without --start fails in detect.
	plain := t.TempDir()
	writeFile(t, filepath.Join(plain, "README"), "hi")
	out, errOut, code := a.cli("deploy", "a", "--dir", plain, "--wait")
	if code != 1 || !strings.Contains(out+errOut, "no app found: looked for package.json") {
		t.Fatalf("folder without package.json: %d\n%s%s", code, out, errOut)
	}
	// A lockfile whose package manager is missing says which and how.
	yarnApp := t.TempDir()
	writeFile(t, filepath.Join(yarnApp, "package.json"), `{"name":"y","scripts":{"start":"node server.js"}}`)
	writeFile(t, filepath.Join(yarnApp, "yarn.lock"), "# yarn lockfile v1\n")
	if _, err := exec.LookPath("yarn"); err != nil {
		out, errOut, code = a.cli("deploy", "a", "--dir", yarnApp, "--wait")
		if code != 1 || !strings.Contains(out+errOut, "yarn is not installed") {
			t.Fatalf("yarn app without yarn: %d\n%s%s", code, out, errOut)
		}
	}

	// A second deploy while one runs gets a 409 naming the running one.
	_, _, _ = a.cli("deploy", "b", "--repo", bare, "--build", "sleep 3")
	resp, err := http.Post(a.url("admin", "/api/slots/b/deploy"), "application/json", strings.NewReader(`{"repo":"`+bare+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(b), `"deploy_id": "b-`) {
		t.Fatalf("concurrent deploy: %d %s", resp.StatusCode, b)
	}
	// The API refuses what is not JSON, unknown fields and huge bodies.
	for _, c := range []struct {
		ctype, body string
		want        int
	}{
		{"text/plain", `{"repo":"x"}`, http.StatusUnsupportedMediaType},
		{"application/json", `{"repository":"x"}`, http.StatusBadRequest},
		{"application/json", `{"repo":"` + strings.Repeat("x", 2<<20) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		resp, err := http.Post(a.url("admin", "/api/slots/c/deploy"), c.ctype, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %.40s: %d, want %d", c.ctype, c.body, resp.StatusCode, c.want)
		}
	}
	// A NUL byte cannot be in an environment: refused at input, not at
	// every later start of the app.
	for _, c := range []struct{ path, body string }{
		{"/api/slots/e/env", `{"set":{"V":"a\u0000b"}}`},
		{"/api/slots/e/deploy", `{"repo":"` + bare + `","env":{"V":"\u0000"}}`},
	} {
		resp, err := http.Post(a.url("admin", c.path), "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "NUL") {
			t.Errorf("%s %s: %d %s, want 400 naming the NUL", c.path, c.body, resp.StatusCode, b)
		}
	}
	var env admin.EnvAnswer
	a.apiJSON("/api/slots/e/env", &env)
	if len(env.Env) != 0 {
		t.Fatalf("a refused env change was saved: %v", env.Env)
	}
}

func TestDeployFolderAndPrivateHTTPRepo(t *testing.T) {
	a := newAgent(t)
	root := t.TempDir()
	_, work := sampleRepo(t, root)
	a.start(fastDeploys...)

	// A git work tree deploys HEAD plus what is not committed yet.
	setVersion(t, work, "v9-uncommitted")
	out := a.mustCLI("deploy", "c", "--dir", work, "--wait")
	if _, b := body(t, a.url("c", "/")); b != "hello v9-uncommitted 1m" {
		t.Fatalf("folder deploy: %q\n%s", b, out)
	}
	var rels admin.ReleaseList
	a.apiJSON("/api/slots/c/releases", &rels)
	if len(rels.Releases) != 1 || !strings.HasSuffix(rels.Releases[0].Commit, "-dirty") {
		t.Fatalf("folder release: %+v", rels)
	}

	// A private repository over smart HTTP with a token in the URL.
	base := testkit.GitHTTPServer(t, root, testkit.WithBasicAuth("deployer", "tok-http-987"))
	url := strings.Replace(base, "http://", "http://deployer:tok-http-987@", 1) + "/app.git"
	out = a.mustCLI("deploy", "d", "--repo", url, "--wait")
	if _, b := body(t, a.url("d", "/")); b != "hello v1 1m" {
		t.Fatalf("http deploy: %q\n%s", b, out)
	}
	bad := strings.Replace(url, "tok-http-987", "tok-wrong-654", 1)
	out, errOut, code := a.cli("deploy", "e", "--repo", bad, "--wait")
	if code != 1 {
		t.Fatalf("wrong token deployed:\n%s%s", out, errOut)
	}
	for _, s := range []string{out, errOut} {
		if strings.Contains(s, "tok-http-987") || strings.Contains(s, "tok-wrong-654") {
			t.Fatalf("CLI output shows a token:\n%s", s)
		}
	}
	for _, path := range []string{"/api/slots/d/deploys", "/api/slots/e/deploys", "/api/slots/d/releases"} {
		_, b := body(t, a.url("admin", path))
		if strings.Contains(b, "tok-http-987") || strings.Contains(b, "tok-wrong-654") || !strings.Contains(b, "deployer:***@") {
			t.Errorf("%s: token not redacted: %s", path, b)
		}
	}
	assertNoSecretInLogs(t, a.dataDir, "tok-http-987", "tok-wrong-654")
	if b, _ := os.ReadFile(filepath.Join(a.dataDir, "state.json")); strings.Contains(string(b), "tok-http-987") {
		t.Fatal("the state file keeps the token")
	}
}

// TestKill9MidDeploy: the agent dies during a build; the next one marks
// the deploy abandoned, removes the half-made release and serves the old one.
func TestKill9MidDeploy(t *testing.T) {
	a, bare := servingV1WithV2Pushed(t)
	out := a.mustCLI("deploy", "a", "--repo", bare, "--build", "sleep 30")
	id := strings.Fields(out)[1]
	// The build (sleep 30) runs once its stage is announced in the log.
	var rec deploy.Record
	a.apiJSON("/api/deploys/"+id, &rec)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if log, _ := os.ReadFile(rec.Log); strings.Contains(string(log), "==> build") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deploy never reached the build")
		}
	}
	a.signal(syscall.SIGKILL)
	a.wait(5 * time.Second)

	a.start(fastDeploys...)
	testkit.WaitHTTP(t, a.url("a", "/health"), 200, 10*time.Second)
	if _, b := body(t, a.url("a", "/")); b != "hello v1 1m" {
		t.Fatalf("after restart: %q", b)
	}
	a.apiJSON("/api/deploys/"+id, &rec)
	if rec.Status != deploy.Abandoned {
		t.Fatalf("record after restart: %+v", rec)
	}
	dirs, _ := os.ReadDir(filepath.Join(a.dataDir, "slots", "a", "releases"))
	if len(dirs) != 1 {
		t.Fatalf("release folders after restart: %v", dirs)
	}
	// The slot is not stuck: a new deploy goes through.
	a.mustCLI("deploy", "a", "--repo", bare, "--wait")
	if _, b := body(t, a.url("a", "/")); b != "hello v2 1m" {
		t.Fatalf("deploy after restart: %q", b)
	}
}

func TestImportLegacy(t *testing.T) {
	a := newAgent(t)
	bare, _ := sampleRepo(t, t.TempDir())
	a.start(fastDeploys...)
	bad := filepath.Join(t.TempDir(), "slots.json")
	writeFile(t, bad, `{"slots": {"a": {"repository": "`+bare+`", "branch": "main", "status": "deployed"}, "b": {"repository": "-x", "status": "deployed"}}}`)
	if _, errOut, code := a.cli("import-legacy", bad); code != 1 || !strings.Contains(errOut, "slot b") {
		t.Fatalf("bad slots.json: %d %s", code, errOut)
	}
	if p := a.processes().Processes[1]; p.Type != "placeholder" {
		t.Fatal("a refused import deployed something")
	}
	writeFile(t, bad, `{"slots": {"a": {"repository": "`+bare+`", "branch": "main", "status": "deployed", "environment": {"V": "a\u0000b"}}}}`)
	if _, errOut, code := a.cli("import-legacy", bad); code != 1 || !strings.Contains(errOut, "slot a: ") || !strings.Contains(errOut, "NUL") ||
		strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("slots.json with a NUL in an env value: %d %s", code, errOut)
	}
	if _, errOut, code := a.cli("import-legacy", filepath.Join(t.TempDir(), "missing.json")); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Fatalf("missing slots.json: %d %s", code, errOut)
	}
	good := filepath.Join(t.TempDir(), "slots.json")
	writeFile(t, good, `{"slots": {"a": {"repository": "`+bare+`", "branch": "main", "status": "deployed", "environment": {"API_TOKEN": "legacy-tok-42", "WORKERS": 2}},
	  "b": {"repository": "", "status": "empty"}}}`)
	out := a.mustCLI("import-legacy", good)
	if !strings.Contains(out, "slot b: empty in the old setup") || !strings.Contains(out, "succeeded") {
		t.Fatalf("import output:\n%s", out)
	}
	if _, b := body(t, a.url("a", "/env/WORKERS")); b != "2" {
		t.Fatalf("imported env: %q", b)
	}
	if strings.Contains(out, "legacy-tok-42") {
		t.Fatal("import printed a secret")
	}
}

// TestDeployLogStreamsAsServerSentEvents: the panel's live log.
func TestDeployLogStreamsAsServerSentEvents(t *testing.T) {
	a := newAgent(t)
	bare, _ := sampleRepo(t, t.TempDir())
	a.start(fastDeploys...)
	resp, err := http.Post(a.url("admin", "/api/slots/e/deploy"), "application/json", strings.NewReader(`{"repo":"`+bare+`","env":{"K":"sse-secret-77"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var rec deploy.Record
	err = json.NewDecoder(resp.Body).Decode(&rec)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusAccepted || rec.Status != deploy.Running || rec.ID == "" {
		t.Fatalf("deploy: %d %+v %v", resp.StatusCode, rec, err)
	}
	req, _ := http.NewRequest("GET", a.url("admin", "/api/deploys/"+rec.ID+"/log"), nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	stream := string(b)
	if resp.Header.Get("Content-Type") != "text/event-stream" || !strings.Contains(stream, "data: ") ||
		!strings.Contains(stream, "==> install") || !strings.Contains(stream, "event: end\ndata: {") || !strings.Contains(stream, `"status":"succeeded"`) {
		t.Fatalf("event stream:\n%s", stream)
	}
	if strings.Contains(stream, "sse-secret-77") {
		t.Fatal("the deploy log shows an env value")
	}
	a.apiJSON("/api/deploys/"+rec.ID, &rec)
	names := []string{}
	for _, s := range rec.Stages {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "fetch,detect,install,build,start,health,cutover" || rec.Commit == "" || rec.FinishedAt.IsZero() {
		t.Fatalf("record: stages %s, %+v", got, rec)
	}
	if code, _ := body(t, a.url("admin", "/api/deploys/e-nope")); code != 404 {
		t.Fatalf("unknown deploy: %d", code)
	}
}

// stubbornApp is the hello app ignoring SIGTERM: stopping it takes the
// whole kill_timeout.
var stubbornApp = strings.Replace(testkit.HelloApp,
	"process.on('SIGTERM', () => server.close(() => process.exit(0)));", "process.on('SIGTERM', () => {});", 1)

// TestStopHoldsTheSlot: a stop (which may take kill_timeout) reserves the
// slot as a deploy does; a deploy asked for meanwhile is refused and the
// state says what the stop did.
func TestStopHoldsTheSlot(t *testing.T) {
	if !strings.Contains(stubbornApp, "() => {}") {
		t.Fatal("stubbornApp: the hello app's SIGTERM handler changed")
	}
	a := newAgent(t)
	testkit.NeedNode(t)
	dir := testkit.WriteApp(t, stubbornApp)
	a.start()
	a.mustCLI("deploy", "a", "--dir", dir, "--start", "node server.js", "--wait")

	stopped := make(chan error, 1)
	go func() {
		cmd := exec.Command(binary, "stop", "a")
		cmd.Env = a.env
		stopped <- reaper.RunTo(context.Background(), cmd, io.Discard, io.Discard)
	}()
	// The slot shows its placeholder as soon as the stop begins; the app
	// takes kill_timeout (3 s) to go.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, b := body(t, a.url("a", "/")); strings.Contains(b, "ready for deployment") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stop did not begin")
		}
	}
	if out, errOut, code := a.cli("deploy", "a", "--dir", dir, "--start", "node server.js"); code == 0 || !strings.Contains(errOut, "already running") {
		t.Fatalf("deploy during a stop: exit %d\n%s%s", code, out, errOut)
	}
	select {
	case err := <-stopped:
		t.Fatalf("the stop ended before the deploy was refused (%v): the app did not hold it", err)
	default:
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
	st, err := state.Load(filepath.Join(a.dataDir, "state.json"))
	if err != nil || st.Slots["a"].Desired != state.DesiredPlaceholder {
		t.Fatalf("state after the stop: %+v %v", st.Slots["a"], err)
	}
	a.mustCLI("deploy", "a", "--dir", dir, "--start", "node server.js", "--wait")
}

// TestShutdownDuringACutover: SIGTERM while a cutover stops an old app that
// ignores SIGTERM (kill_timeout 30 s): the agent still exits 0 within
// shutdown_timeout (8 s) + 1 s, with the new release saved as current.
func TestShutdownDuringACutover(t *testing.T) {
	a := newAgent(t)
	testkit.NeedNode(t)
	dir := testkit.WriteApp(t, stubbornApp)
	a.start("SLOTAGENT_KILL_TIMEOUT=30s")
	a.mustCLI("deploy", "a", "--dir", dir, "--start", "node server.js", "--env", "VERSION=v1", "--wait")
	_, pid := body(t, a.url("a", "/pid"))
	v1, err := strconv.Atoi(pid)
	if err != nil {
		t.Fatalf("pid of v1: %q", pid)
	}
	// Should the agent leave v1 behind, it must not outlive the test.
	t.Cleanup(func() { _ = syscall.Kill(v1, syscall.SIGKILL) })
	a.mustCLI("deploy", "a", "--dir", dir, "--start", "node server.js", "--env", "VERSION=v2")
	// Swapped: the deploy now stops v1, which takes kill_timeout.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, b := body(t, a.url("a", "/")); b == "hello from a v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("v2 never served\n%s", a.stderr())
		}
	}
	var list struct{ Deploys []deploy.Record }
	a.apiJSON("/api/slots/a/deploys", &list)
	if len(list.Deploys) == 0 || list.Deploys[0].Status != deploy.Running {
		t.Fatalf("the deploy is not mid-cutover: %+v", list.Deploys)
	}
	a.signal(syscall.SIGTERM)
	if d := a.wait(20 * time.Second); a.exitCode() != 0 || d > 9*time.Second {
		t.Fatalf("shutdown: exit %d after %s\n%s", a.exitCode(), d, a.stderr())
	}
	if testkit.PIDAlive(v1) {
		t.Fatalf("the old app (pid %d) outlived the agent", v1)
	}
	st, err := state.Load(filepath.Join(a.dataDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	cur, ok := st.Release("a", st.Slots["a"].Current)
	if !ok || cur.Env["VERSION"] != "v2" || st.Slots["a"].Desired != state.DesiredRunning || len(st.Groups) != 0 {
		t.Fatalf("state after shutdown: %+v", st)
	}
}

// TestKill9DuringInstallLeavesNoInstallBehind: the deploy's commands are
// recorded in the state file while they run, so the next agent after a
// kill -9 kills a leftover `npm ci` and what it started.
func TestKill9DuringInstallLeavesNoInstallBehind(t *testing.T) {
	testkit.NeedNode(t)
	a := newAgent(t)
	app := t.TempDir()
	pidFile := filepath.Join(t.TempDir(), "install.pid")
	writeFile(t, filepath.Join(app, "package.json"), `{"name": "slow", "version": "1.0.0",
  "scripts": {"preinstall": "echo $$ > `+pidFile+`; exec sleep 300", "start": "node server.js"}}`)
	writeFile(t, filepath.Join(app, "package-lock.json"), `{"name": "slow", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
  "packages": {"": {"name": "slow", "version": "1.0.0"}}}`)
	writeFile(t, filepath.Join(app, "server.js"), testkit.HelloApp)
	a.start()
	a.mustCLI("deploy", "a", "--dir", app)

	// Wait until the install's script runs and the state file records the
	// install's process group.
	var install procgroup.Identity
	var sleepPID int
	for deadline := time.Now().Add(60 * time.Second); install.PID == 0 || sleepPID == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the install never ran with its group recorded (pid file %d, group %+v):\n%s", sleepPID, install, a.stderr())
		}
		b, _ := os.ReadFile(pidFile)
		sleepPID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		st, err := state.Load(filepath.Join(a.dataDir, "state.json"))
		if err != nil {
			continue
		}
		for name, id := range st.Groups {
			if strings.HasPrefix(name, "deploy-command-") {
				install = id
			}
		}
	}
	a.signal(syscall.SIGKILL)
	a.wait(5 * time.Second)
	if !install.Alive() || !testkit.PIDAlive(sleepPID) {
		t.Fatalf("the install died with the agent (npm %v, its script %v): the test cannot show the cleanup", install.Alive(), testkit.PIDAlive(sleepPID))
	}

	a.start()
	for _, pid := range []int{install.PID, sleepPID} {
		if testkit.PIDAlive(pid) {
			t.Errorf("process %d of the install survived the new agent's start", pid)
		}
	}
	if !strings.Contains(a.stderr(), "killing process group left by an earlier agent") {
		t.Errorf("no cleanup logged:\n%s", a.stderr())
	}
}
