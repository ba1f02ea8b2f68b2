//go:build e2e

package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/coder/coder/v2/codersdk"

	"github.com/coder-slots/coder-slots/agent/detach"
)

// The workspace and its owner; the template's apps keep slotprov's default
// slugs (admin, slot-a … slot-e).
const (
	owner         = "e2e"
	workspaceName = "slots"
	templateName  = "coder-slots-e2e"
)

func TestMain(m *testing.M) {
	// `flock /tmp/e2e.lock make e2e` hands the lock down as an open
	// descriptor: without this, dockerd and the other daemons inherit it,
	// and one left behind by a killed run holds the lock for good.
	detach.CloseInheritedOnExec()
	if err := preflight(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: "+err.Error())
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// figures are the timings the run prints, in order.
type figures struct {
	rows [][2]string
}

func (f *figures) add(name string, d time.Duration) {
	f.rows = append(f.rows, [2]string{name, d.Round(10 * time.Millisecond).String()})
}

func (f *figures) table() string {
	var b strings.Builder
	b.WriteString("| step | time |\n| --- | --- |\n")
	for _, r := range f.rows {
		fmt.Fprintf(&b, "| %s | %s |\n", r[0], r[1])
	}
	return b.String()
}

// world is everything the test runs against: Docker, PostgreSQL and Coder.
type world struct {
	root, cache, tmp string
	docker           *dockerEngine
	coderBin         string
	coder            *daemon
	url              string
	port             int
	client           *codersdk.Client
	token            string
	containerLog     string
}

func TestCoderWorkspace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 70*time.Minute)
	defer cancel()
	w := setUp(ctx, t)
	var figs figures

	// Render for the host's network (dockerd has no bridge here), validate
	// with the real Terraform, push with slotprov, then once more with the
	// coder CLI, as template admins do.
	tpl, _, first := w.slotprovTemplate(ctx, t, templateName, "template",
		fmt.Sprintf("app_host: \"*.coder.localhost:%d\"\napp_url_style: short\nimage:\n  ref: %s\ndocker:\n  network_mode: host\n", w.port, workspaceImage), &figs)
	start := time.Now()
	mustRun(ctx, t, w.coderEnv(), w.coderBin, "--global-config", filepath.Join(w.tmp, "coder-cli"),
		"templates", "push", templateName, "--directory", tpl, "--yes")
	figs.add("coder templates push → template active", time.Since(start))
	tmpl := w.template(ctx, t, templateName)
	if tmpl.ActiveVersionID == first.ActiveVersionID {
		t.Fatal("coder templates push did not make a new active version")
	}

	// A workspace: the build, the agent ready, all six apps healthy.
	start = time.Now()
	ws := w.createWorkspace(ctx, t, tmpl, workspaceName)
	w.followContainerLog(t)
	w.waitHealthy(ctx, t, ws.ID)
	figs.add("create → agent ready, six apps healthy", time.Since(start))
	w.checkProxied(ctx, t)

	// A real app with an npm dependency, from a git repository, deployed
	// through the agent's API behind Coder's proxy.
	rec, appBody := w.deployApp(ctx, t, gitDaemon(ctx, t, w.tmp), &figs)
	release := rec.Release

	requestsBefore, eventsBefore := w.history(ctx, t, "a")
	if requestsBefore < 1 || !strings.Contains(eventsBefore, "deploy:"+rec.ID) {
		t.Fatalf("slot a's history before the stop: %d requests, events %s", requestsBefore, eventsBefore)
	}

	// Stop: Docker gives slotagent its grace, and it stops cleanly.
	vol := w.volumeDir(ctx, t, ws.ID)
	start = time.Now()
	w.transition(ctx, t, ws.ID, codersdk.WorkspaceTransitionStop)
	figs.add("stop (build done, container gone)", time.Since(start))
	w.checkCleanStop(t, vol)

	// Start: the same release serves again, with no step by hand.
	w.startServing(ctx, t, ws.ID, appBody, release, &figs, func() { w.followContainerLog(t) })
	// The history is on the home volume: what it had before the stop is
	// still there, and the agent's start is recorded after it.
	if n, events := w.history(ctx, t, "a"); n < requestsBefore || !strings.HasPrefix(events, eventsBefore) ||
		!strings.HasSuffix(events, "start:agent started") {
		t.Fatalf("slot a's history after stop and start: %d requests (were %d), events %s (were %s)", n, requestsBefore, events, eventsBefore)
	}

	header := fmt.Sprintf("a real Coder %s server and Docker %s on this machine", w.coderVersion(ctx), w.dockerVersion(ctx))
	table := figs.table()
	t.Logf("make e2e figures, %s:\n%s", header, table)
	if os.Getenv("E2E_RECORD") == "1" {
		recordFigures(t, filepath.Join(w.root, "docs", "benchmarks.md"), header, table)
	}
}

// setUp starts Docker, builds the images, starts PostgreSQL and Coder and
// makes its first user; everything stops when the test ends.
func setUp(ctx context.Context, t *testing.T) *world {
	w := newWorld(t)
	w.dockerAndImage(ctx, t)
	w.coderServer(ctx, t)
	return w
}

// newWorld checks what make e2e builds first and makes the run's
// temporary folder.
func newWorld(t *testing.T) *world {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, need := range []string{filepath.Join(root, "bin", "slotprov"), filepath.Join(root, ".cache", "tf-mirror", "terraformrc")} {
		if _, err := os.Stat(need); err != nil {
			t.Fatalf("%s is missing: run make build tf-mirror first (make e2e does)", need)
		}
	}
	cache := cacheDir()
	if err := os.MkdirAll(cache, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp("", "coder-slots-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	return &world{root: root, cache: cache, tmp: tmp}
}

// step runs one part of the set-up, fails the test with its error and
// logs how long it took.
func step(t *testing.T, name string, f func() error) {
	t.Helper()
	start := time.Now()
	if err := f(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Logf("%s: %s", name, time.Since(start).Round(time.Millisecond))
}

// dockerAndImage starts the harness's dockerd (stopped when the test ends)
// and builds the base images and the workspace image on it.
func (w *world) dockerAndImage(ctx context.Context, t *testing.T) {
	bases := w.dockerBases(ctx, t)
	step(t, "workspace image", func() error { return w.docker.workspaceImage(ctx, w.root, bases) })
}

// dockerBases starts the harness's dockerd (stopped when the test ends)
// and makes the local base images on it.
func (w *world) dockerBases(ctx context.Context, t *testing.T) baseTags {
	step(t, "dockerd", func() (err error) {
		w.docker, err = startDocker(ctx, w.cache)
		return err
	})
	t.Cleanup(func() { w.docker.stop() })
	var bases baseTags
	step(t, "base images", func() (err error) {
		bases, err = w.docker.baseImages(ctx, w.cache)
		return err
	})
	return bases
}

// coderServer builds Coder and starts it with a PostgreSQL of its own.
func (w *world) coderServer(ctx context.Context, t *testing.T) {
	step(t, "coder binary", func() (err error) {
		w.coderBin, err = coderBinary(ctx, w.root, w.cache)
		return err
	})
	var pg *daemon
	var pgURL string
	step(t, "PostgreSQL for Coder", func() (err error) {
		pg, pgURL, err = startPostgres(ctx, filepath.Join(w.tmp, "pg"))
		return err
	})
	t.Cleanup(func() { pg.stop(syscall.SIGINT, 15*time.Second) })
	step(t, "coder server", func() error { return w.startCoder(ctx, t, pgURL) })
}

// dockerHost is the harness's dockerd, or none once it is stopped (the
// Kubernetes test stops it before its cluster starts).
func (w *world) dockerHost() string {
	if w.docker == nil {
		return ""
	}
	return w.docker.host
}

// startCoder runs the Coder server on loopback with its built-in
// provisioners, Terraform's providers from the local mirror and Docker from
// the harness's engine, and logs in as its first user.
func (w *world) startCoder(ctx context.Context, t *testing.T, pgURL string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	w.port = port
	w.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	cacheDir := filepath.Join(w.tmp, "coder-cache")
	// A server built from the Go module embeds no agent binaries: the
	// workspace's init script downloads the agent from here.
	binDir := filepath.Join(cacheDir, "site", "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("coder cache: %w", err)
	}
	if _, err := command(ctx, "", nil, nil, "cp", w.coderBin, filepath.Join(binDir, "coder-linux-amd64")); err != nil {
		return err
	}
	logPath := filepath.Join(w.tmp, "coder-server.log")
	w.coder, err = startDaemon(w.coderBin, logPath, []string{
		"CODER_HTTP_ADDRESS=127.0.0.1:" + strconv.Itoa(port),
		"CODER_ACCESS_URL=" + w.url,
		fmt.Sprintf("CODER_WILDCARD_ACCESS_URL=*.coder.localhost:%d", port),
		"CODER_PG_CONNECTION_URL=" + pgURL,
		"CODER_CACHE_DIRECTORY=" + cacheDir,
		"CODER_CONFIG_DIR=" + filepath.Join(w.tmp, "coder-config"),
		// Nothing leaves this machine: no telemetry, no update check, no
		// public STUN servers.
		"CODER_TELEMETRY_ENABLE=false",
		"CODER_UPDATE_CHECK=false",
		"CODER_DERP_SERVER_STUN_ADDRESSES=disable",
		"CODER_PROVISIONER_DAEMONS=2",
		"TF_CLI_CONFIG_FILE=" + filepath.Join(w.root, ".cache", "tf-mirror", "terraformrc"),
		"DOCKER_HOST=" + w.dockerHost(),
	}, nil, "server")
	if err != nil {
		return err
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("coder server log (last lines):\n%s", tailFile(logPath, 40))
			if w.containerLog != "" {
				t.Logf("workspace container log (last lines):\n%s", tailFile(w.containerLog, 60))
			}
		}
		w.coder.stop(syscall.SIGTERM, 20*time.Second)
	})
	err = waitFor(ctx, 3*time.Minute, 250*time.Millisecond, "coder server answering", func() error {
		if w.coder.exited() {
			return errors.New("coder server exited:\n" + tailFile(logPath, 30))
		}
		resp, err := http.Get(w.url + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz: %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		return err
	}
	u, err := url.Parse(w.url)
	if err != nil {
		return fmt.Errorf("coder url: %w", err)
	}
	w.client = codersdk.New(u)
	const password = "e2e-Coder-Slots-passw0rd"
	if _, err := w.client.CreateFirstUser(ctx, codersdk.CreateFirstUserRequest{
		Email: owner + "@example.com", Username: owner, Name: "End To End", Password: password,
	}); err != nil {
		return fmt.Errorf("first user: %w", err)
	}
	login, err := w.client.LoginWithPassword(ctx, codersdk.LoginWithPasswordRequest{Email: owner + "@example.com", Password: password})
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	w.token = login.SessionToken
	w.client.SetSessionToken(w.token)
	return nil
}

// waitBuild waits for a workspace build to end and fails the test, with
// the build's log, unless it succeeded. It asks for the build itself, which
// Coder still answers for after a delete.
func (w *world) waitBuild(ctx context.Context, t *testing.T, id uuid.UUID) {
	t.Helper()
	b := w.finishBuild(ctx, t, id)
	if b.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("the %s build %s: %s\n%s", b.Transition, b.Job.Status, b.Job.Error, w.buildLog(ctx, b.ID))
	}
}

// finishBuild waits for a workspace build to end, whatever its outcome.
func (w *world) finishBuild(ctx context.Context, t *testing.T, id uuid.UUID) codersdk.WorkspaceBuild {
	t.Helper()
	var b codersdk.WorkspaceBuild
	err := waitFor(ctx, 15*time.Minute, 500*time.Millisecond, "workspace build", func() error {
		var err error
		b, err = w.client.WorkspaceBuild(ctx, id)
		if err != nil {
			return err
		}
		switch b.Job.Status {
		case codersdk.ProvisionerJobSucceeded, codersdk.ProvisionerJobFailed, codersdk.ProvisionerJobCanceled:
			return nil
		}
		return fmt.Errorf("build %s", b.Job.Status)
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (w *world) buildLog(ctx context.Context, build uuid.UUID) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	logs, closer, err := w.client.WorkspaceBuildLogsAfter(ctx, build, 0)
	if err != nil {
		return "build log: " + err.Error()
	}
	defer closer.Close()
	var lines []string
	for l := range logs {
		lines = append(lines, l.Stage+": "+l.Output)
	}
	return tail(strings.Join(lines, "\n"), 40)
}

// waitHealthy waits for the agent to be ready and every app healthy.
func (w *world) waitHealthy(ctx context.Context, t *testing.T, id uuid.UUID) {
	t.Helper()
	err := waitFor(ctx, 5*time.Minute, 500*time.Millisecond, "agent ready and apps healthy", func() error {
		ws, err := w.client.Workspace(ctx, id)
		if err != nil {
			return err
		}
		apps := 0
		for _, r := range ws.LatestBuild.Resources {
			for _, a := range r.Agents {
				if a.LifecycleState != codersdk.WorkspaceAgentLifecycleReady {
					return fmt.Errorf("agent %s is %s", a.Name, a.LifecycleState)
				}
				for _, app := range a.Apps {
					if app.Health != codersdk.WorkspaceAppHealthHealthy {
						return fmt.Errorf("app %s is %s", app.Slug, app.Health)
					}
					apps++
				}
			}
		}
		if apps != 6 {
			return fmt.Errorf("%d apps, want 6", apps)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// transition runs a stop or start build and waits for it.
func (w *world) transition(ctx context.Context, t *testing.T, id uuid.UUID, tr codersdk.WorkspaceTransition) {
	t.Helper()
	b, err := w.client.CreateWorkspaceBuild(ctx, id, codersdk.CreateWorkspaceBuildRequest{Transition: tr})
	if err != nil {
		t.Fatalf("%s: %v", tr, err)
	}
	w.waitBuild(ctx, t, b.ID)
}

func (w *world) deleteWorkspace(t *testing.T, id uuid.UUID) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b, err := w.client.CreateWorkspaceBuild(ctx, id, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionDelete})
	if err != nil {
		t.Errorf("delete workspace: %v", err)
		return
	}
	w.waitBuild(ctx, t, b.ID)
}

// appHost is the Host of an app of the workspace behind Coder's subdomain
// proxy (the short form: {slug}--{workspace}--{owner}).
func (w *world) appHost(slug string) string {
	return fmt.Sprintf("%s--%s--%s.coder.localhost:%d", slug, workspaceName, owner, w.port)
}

// request sends a request to an app through Coder's subdomain proxy.
func (w *world) request(ctx context.Context, method, slug, path string, body io.Reader) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, w.url+path, body)
	if err != nil {
		return 0, "", err
	}
	req.Host = w.appHost(slug)
	req.Header.Set(codersdk.SessionTokenHeader, w.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (w *world) get(ctx context.Context, slug, path string) (int, string, error) {
	return w.request(ctx, http.MethodGet, slug, path, nil)
}

func (w *world) mustGet(ctx context.Context, t *testing.T, slug, path string, want int) string {
	t.Helper()
	code, body, err := w.get(ctx, slug, path)
	if err != nil || code != want {
		t.Fatalf("GET %s%s through Coder: %d %v\n%.400s", w.appHost(slug), path, code, err, body)
	}
	return body
}

// history is slot's requests over the last hour, summed, and its events
// as "kind:deploy_id or detail", comma-separated.
func (w *world) history(ctx context.Context, t *testing.T, slot string) (uint32, string) {
	t.Helper()
	var h struct {
		Requests []uint32 `json:"requests"`
		Events   []struct {
			Kind     string `json:"kind"`
			DeployID string `json:"deploy_id"`
			Detail   string `json:"detail"`
		} `json:"events"`
	}
	body := w.mustGet(ctx, t, "admin", "/api/slots/"+slot+"/history", http.StatusOK)
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("slot %s's history: %v\n%.400s", slot, err, body)
	}
	var n uint32
	for _, r := range h.Requests {
		n += r
	}
	var events []string
	for _, e := range h.Events {
		events = append(events, e.Kind+":"+cmp.Or(e.DeployID, e.Detail))
	}
	return n, strings.Join(events, ",")
}

// waitServing waits until an app answers through Coder with body.
func (w *world) waitServing(ctx context.Context, t *testing.T, slug, body string) {
	t.Helper()
	err := waitFor(ctx, 5*time.Minute, 250*time.Millisecond, slug+" serving", func() error {
		code, got, err := w.get(ctx, slug, "/")
		if err != nil {
			return err
		}
		if code != http.StatusOK || got != body {
			return fmt.Errorf("%d %.200s", code, got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// deployRecord is the part of the agent's deploy record the test reads.
type deployRecord struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Error   string `json:"error"`
	Release string `json:"release"`
}

// deploy deploys repo's ref into slot through the panel's API behind
// Coder's proxy and waits for it to succeed.
func (w *world) deploy(ctx context.Context, t *testing.T, slot, repo, ref string) deployRecord {
	t.Helper()
	req, err := json.Marshal(map[string]string{"repo": repo, "ref": ref})
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := w.request(ctx, http.MethodPost, "admin", "/api/slots/"+slot+"/deploy", bytes.NewReader(req))
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("POST /api/slots/%s/deploy through Coder: %d %v\n%.400s", slot, code, err, body)
	}
	var rec deployRecord
	if err := json.Unmarshal([]byte(body), &rec); err != nil || rec.ID == "" {
		t.Fatalf("deploy record %q: %v", body, err)
	}
	err = waitFor(ctx, 10*time.Minute, 250*time.Millisecond, "deploy "+rec.ID, func() error {
		code, body, err := w.get(ctx, "admin", "/api/deploys/"+rec.ID)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("%d %.200s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &rec); err != nil {
			return err
		}
		if rec.Status == "running" {
			return errors.New("running")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != "succeeded" {
		_, log, _ := w.get(ctx, "admin", "/api/deploys/"+rec.ID+"/log")
		t.Fatalf("deploy %s %s: %s\n%s", rec.ID, rec.Status, rec.Error, tail(log, 40))
	}
	return rec
}

// currentRelease is the release a slot serves, from GET /api/slots.
func (w *world) currentRelease(ctx context.Context, t *testing.T, slot string) string {
	t.Helper()
	var slots struct {
		Slots []struct {
			Name    string `json:"name"`
			Release string `json:"release"`
		} `json:"slots"`
	}
	if err := json.Unmarshal([]byte(w.mustGet(ctx, t, "admin", "/api/slots", http.StatusOK)), &slots); err != nil {
		t.Fatal(err)
	}
	for _, s := range slots.Slots {
		if s.Name == slot {
			return s.Release
		}
	}
	t.Fatalf("no slot %s in /api/slots", slot)
	return ""
}

// containerName is the workspace container's name in the template.
func containerName() string { return "coder-" + owner + "-" + workspaceName }

// followContainerLog copies the workspace container's output (slotagent's
// log) into a file until the container goes away; the stop check reads it.
func (w *world) followContainerLog(t *testing.T) {
	w.containerLog = filepath.Join(w.tmp, "container-"+strconv.FormatInt(time.Now().UnixNano(), 10)+".log")
	d, err := startDaemon("docker", w.containerLog, []string{"DOCKER_HOST=" + w.docker.host}, nil, "logs", "--follow", "--timestamps", containerName())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.stop(syscall.SIGTERM, 5*time.Second) })
}

// volumeDir is where the workspace's home volume keeps its files.
func (w *world) volumeDir(ctx context.Context, t *testing.T, id uuid.UUID) string {
	t.Helper()
	out, err := w.docker.docker(ctx, nil, "volume", "inspect", "--format", "{{.Mountpoint}}", "coder-"+id.String()+"-home")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// checkCleanStop: slotagent said it stopped cleanly, PostgreSQL shut down
// (no postmaster.pid), and the state file lists no running process group.
func (w *world) checkCleanStop(t *testing.T, vol string) {
	t.Helper()
	if log := tailFile(w.containerLog, 200); !strings.Contains(log, "stopped cleanly") {
		t.Fatalf("slotagent's log does not say it stopped cleanly:\n%s", tail(log, 30))
	}
	data := filepath.Join(vol, "data", "slotagent")
	if _, err := os.Stat(filepath.Join(data, "postgres", "data", "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid is still there after the stop (err %v)", err)
	}
	b, err := os.ReadFile(filepath.Join(data, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Groups map[string]json.RawMessage `json:"groups"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Groups) != 0 {
		t.Fatalf("the state file still lists running process groups after the stop: %s", b)
	}
}

func (w *world) coderVersion(ctx context.Context) string {
	b, err := w.client.BuildInfo(ctx)
	if err != nil {
		return "?"
	}
	return b.Version
}

func (w *world) dockerVersion(ctx context.Context) string {
	out, err := w.docker.docker(ctx, nil, "version", "--format", "{{.Server.Version}}")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(out)
}

// slowStopBranch is the e2e repository's branch whose app takes its whole
// grace to stop.
const slowStopBranch = "slow-stop"

// gitDaemon makes a git repository with a small Node.js app that needs an
// npm package (branch main) and, on branch slowStopBranch, an app that
// takes its whole grace to stop; it serves it with `git daemon` on
// loopback (the workspace shares the host's network) and returns the
// repository's git:// URL.
func gitDaemon(ctx context.Context, t *testing.T, tmp string) string {
	t.Helper()
	base := filepath.Join(tmp, "git")
	work := filepath.Join(tmp, "app")
	writeFile(t, filepath.Join(work, "package.json"), `{"name": "e2e-app", "version": "1.0.0", "private": true,
  "dependencies": {"is-number": "7.0.0"}, "scripts": {"start": "node server.js"}}
`)
	writeFile(t, filepath.Join(work, "server.js"), `const http = require("http");
const isNumber = require("is-number");
http.createServer((req, res) => {
  res.end("e2e-app is-number=" + isNumber(5) + " slot=" + process.env.SLOT_NAME + "\n");
}).listen(process.env.PORT, "127.0.0.1");
`)
	mustRun(ctx, t, nil, "npm", "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", work)
	git := []string{"GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.com", "GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.com"}
	mustRun(ctx, t, git, "git", "-C", work, "init", "-q", "-b", "main")
	mustRun(ctx, t, git, "git", "-C", work, "add", "-A")
	mustRun(ctx, t, git, "git", "-C", work, "commit", "-q", "-m", "e2e app")
	mustRun(ctx, t, git, "git", "-C", work, "checkout", "-q", "-b", slowStopBranch)
	writeFile(t, filepath.Join(work, "server.js"), `const http = require("http");
// It ignores SIGTERM and never answers /hold: a stop drains the request
// held there for as long as slotagent allows, then the app is killed.
process.on("SIGTERM", () => console.log("SIGTERM: still draining"));
http.createServer((req, res) => {
  if (req.url === "/hold") return;
  res.end("e2e-app slow-stop slot=" + process.env.SLOT_NAME + "\n");
}).listen(process.env.PORT, "127.0.0.1");
`)
	mustRun(ctx, t, git, "git", "-C", work, "commit", "-q", "-a", "-m", "e2e app that takes its grace to stop")
	mustRun(ctx, t, git, "git", "-C", work, "checkout", "-q", "main")
	mustRun(ctx, t, git, "git", "clone", "-q", "--bare", work, filepath.Join(base, "app.git"))
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon("git", filepath.Join(tmp, "git-daemon.log"), nil, nil, "daemon", "--reuseaddr", "--export-all",
		"--base-path="+base, "--listen=127.0.0.1", "--port="+strconv.Itoa(port), base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.stop(syscall.SIGTERM, 5*time.Second) })
	repo := fmt.Sprintf("git://127.0.0.1:%d/app.git", port)
	if err := waitFor(ctx, 30*time.Second, 100*time.Millisecond, "git daemon", func() error {
		_, err := command(ctx, "", nil, nil, "git", "ls-remote", repo)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return repo
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRun(ctx context.Context, t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := command(ctx, "", env, nil, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// e2eMarker starts the part of docs/benchmarks.md this test writes; make
// bench (agent/cmd/slotbench) keeps everything from this line on.
const e2eMarker = "<!-- make e2e: the figures below are kept by make bench -->"

// recordFigures writes the table into docs/benchmarks.md, from its e2e
// marker to the end.
func recordFigures(t *testing.T, path, header, table string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if i := strings.Index(s, e2eMarker); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimRight(s, "\n") + "\n\n" + e2eMarker + "\n\n## A real Coder workspace (`make e2e`)\n\n" +
		time.Now().UTC().Format("2006-01-02 15:04 UTC") + ", `make e2e E2E_RECORD=1`: " + header + ".\n\n" + table
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
