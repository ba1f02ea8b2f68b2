package slot

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/logs"
	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

func TestMain(m *testing.M) {
	if err := reaper.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// newSlot listens on a free port with a fast restart policy.
func newSlot(t *testing.T) (*Slot, string) {
	t.Helper()
	sup := supervisor.New(t.TempDir(), logs.Options{}, 0)
	pol := supervisor.DefaultPolicy()
	pol.KillTimeout = 2 * time.Second
	pol.MinUptime = 200 * time.Millisecond
	pol.MaxRestarts = 3
	s, err := Listen(Config{
		Name: "a", Bind: "127.0.0.1", Port: testkit.FreePort(t),
		URL: "https://slot-a--dev--alice.coder.example.com", AdminURL: "https://admin--dev--alice.coder.example.com",
		Policy: pol, BaseEnv: os.Environ(),
	}, sup)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop(time.Second)
		_ = s.Shutdown(context.Background())
		sup.Close(time.Second)
	})
	return s, "http://" + s.Addr().String()
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestPlaceholder(t *testing.T) {
	s, base := newSlot(t)
	resp, body := get(t, base+"/health")
	var h map[string]string
	if err := json.Unmarshal([]byte(body), &h); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/health: %d %q", resp.StatusCode, body)
	}
	if h["status"] != "healthy" || h["slot"] != "a" || h["type"] != "placeholder" {
		t.Fatalf("/health = %v", h)
	}
	resp, body = get(t, base+"/anything")
	for _, want := range []string{"Slot a", "ready for deployment", "https://slot-a--dev--alice.coder.example.com", `href="https://admin--dev--alice.coder.example.com"`} {
		if !strings.Contains(body, want) {
			t.Errorf("placeholder page lacks %q", want)
		}
	}
	if resp.StatusCode != 200 {
		t.Fatalf("placeholder status %d", resp.StatusCode)
	}
	s.SetError(`release <r1> could not be started`)
	_, body = get(t, base+"/")
	if !strings.Contains(body, "release &lt;r1&gt; could not be started") {
		t.Fatalf("error not shown escaped on the placeholder: %s", body)
	}
	if ok, why := s.Serving(context.Background()); !ok || why != "placeholder" {
		t.Fatalf("Serving() = %v %q", ok, why)
	}
	if st := s.Status(); st.Type != "placeholder" || st.Process != nil || st.Error == "" {
		t.Fatalf("Status() = %+v", st)
	}
}

func runHello(t *testing.T, s *Slot, env map[string]string) {
	t.Helper()
	testkit.NeedNode(t)
	dir := testkit.WriteApp(t, testkit.HelloApp)
	if err := s.Run(Release{ID: "r1", Dir: dir, Command: "node server.js", Env: env}); err != nil {
		t.Fatal(err)
	}
}

func TestProxyHTTPStreamingAndUpgrade(t *testing.T) {
	s, base := newSlot(t)
	runHello(t, s, map[string]string{"VERSION": "v7", "API_TOKEN": "s3cret-value"})
	testkit.WaitHTTP(t, base+"/health", 200, 10*time.Second)

	_, body := get(t, base+"/")
	if body != "hello from a v7" {
		t.Fatalf("proxied body = %q", body)
	}
	if ok, why := s.Serving(context.Background()); !ok {
		t.Fatalf("Serving() = false: %s", why)
	}
	st := s.Status()
	if st.Type != "app" || st.Release != "r1" || st.Process == nil || st.Process.PID == 0 {
		t.Fatalf("Status() = %+v", st)
	}
	if st.Env["API_TOKEN"] != "********" {
		t.Fatalf("env not masked in Status: %v", st.Env)
	}

	t.Run("streaming", func(t *testing.T) {
		start := time.Now()
		resp, err := http.Get(base + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		first, err := r.ReadString('\n')
		if err != nil || first != "first\n" {
			t.Fatalf("first chunk %q %v", first, err)
		}
		if d := time.Since(start); d > 250*time.Millisecond {
			t.Fatalf("first chunk took %s: the proxy buffered the stream", d)
		}
		rest, _ := io.ReadAll(r)
		if string(rest) != "second\n" || time.Since(start) < 300*time.Millisecond {
			t.Fatalf("second chunk %q after %s", rest, time.Since(start))
		}
	})

	t.Run("websocket upgrade", func(t *testing.T) {
		conn, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		r := bufio.NewReader(conn)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade answered %s", resp.Status)
		}
		for _, msg := range []string{"ping", "pong and more"} {
			fmt.Fprint(conn, msg)
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(r, buf); err != nil || string(buf) != msg {
				t.Fatalf("echo %q, got %q %v", msg, buf, err)
			}
		}
	})

	t.Run("stop brings back the placeholder and frees the app port", func(t *testing.T) {
		port := s.target.Load().port
		s.Stop(0)
		if !testkit.PortFree(port) {
			t.Fatalf("app port %d still taken after Stop", port)
		}
		_, body := get(t, base+"/")
		if !strings.Contains(body, "ready for deployment") {
			t.Fatalf("after stop: %q", body)
		}
	})
}

func TestUnavailablePageWhileAppIsDown(t *testing.T) {
	s, base := newSlot(t)
	dir := t.TempDir()
	if err := s.Run(Release{ID: "r1", Dir: dir, Command: "exit 3"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Status().Process.Status != supervisor.Errored && time.Now().Before(deadline) {
		resp, body := get(t, base+"/")
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Slot a: the app is") || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("while down: %d %q", resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, body := get(t, base+"/")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "errored") || !strings.Contains(body, `http-equiv="refresh"`) {
		t.Fatalf("errored app: %d %q", resp.StatusCode, body)
	}
	if ok, why := s.Serving(context.Background()); ok || !strings.Contains(why, "errored") {
		t.Fatalf("Serving() = %v %q", ok, why)
	}
}

func TestRunRejectsBadReleases(t *testing.T) {
	s, base := newSlot(t)
	if err := s.Run(Release{ID: "r1", Dir: "/nonexistent/dir", Command: "node server.js"}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing dir: %v", err)
	}
	if err := s.Run(Release{ID: "r1", Dir: t.TempDir(), Command: ""}); err == nil || !strings.Contains(err.Error(), "empty start command") {
		t.Fatalf("empty command: %v", err)
	}
	if _, body := get(t, base+"/"); !strings.Contains(body, "ready for deployment") {
		t.Fatal("a refused release changed the slot")
	}
}

// TestPromoteWithoutDowntime: a client requesting in a loop while a second
// release is launched, promoted and the first drained sees no failure, and
// a slow request in flight to the old release completes.
func TestPromoteWithoutDowntime(t *testing.T) {
	s, base := newSlot(t)
	dir := slowAppDir(t)
	if err := s.Run(Release{ID: "r1", Dir: dir, Command: "node server.js", Env: map[string]string{"VERSION": "v1"}}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitHTTP(t, base+"/health", 200, 10*time.Second)

	stop := make(chan struct{})
	var sent, failed, v1, v2 atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			sent.Add(1)
			resp, err := client.Get(base + "/")
			if err != nil {
				failed.Add(1)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode != 200:
				failed.Add(1)
			case string(b) == "hello from a v1":
				v1.Add(1)
			case string(b) == "hello from a v2":
				v2.Add(1)
			}
		}
	}()
	slow := slowRequest(base, 700)
	waitInFlight(t, s)
	waitUntil(t, "a request to v1", func() bool { return v1.Load() > 0 })

	c, err := s.Launch(Release{ID: "r2", Dir: dir, Command: "node server.js", Env: map[string]string{"VERSION": "v2"}})
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/health", c.Port()), 200, 10*time.Second)
	s.Promote(context.Background(), c, 5*time.Second)
	waitUntil(t, "a request to v2", func() bool { return v2.Load() > 0 })
	close(stop)
	<-done
	if r := <-slow; r.err != nil || r.body != "slow done" {
		t.Fatalf("request in flight during the swap got %q, %v", r.body, r.err)
	}
	if failed.Load() != 0 {
		t.Fatalf("during promote: %d of %d requests failed", failed.Load(), sent.Load())
	}
	if st := s.Status(); st.Release != "r2" {
		t.Fatalf("serving %s after promote", st.Release)
	}
	if len(s.sup.List()) != 1 {
		t.Fatalf("old release still supervised: %d processes", len(s.sup.List()))
	}
	t.Logf("requests during promote: %d sent, %d to v1, %d to v2", sent.Load(), v1.Load(), v2.Load())
}

// slowAppDir is the hello app with GET /slow?ms=N answering after N ms.
func slowAppDir(t *testing.T) string {
	t.Helper()
	testkit.NeedNode(t)
	src := strings.Replace(testkit.HelloApp, "if (req.url === '/pid')",
		"if (req.url.startsWith('/slow?ms=')) { setTimeout(() => res.end('slow done'), Number(req.url.slice(9))); return; }\n  if (req.url === '/pid')", 1)
	if src == testkit.HelloApp {
		t.Fatal("slowAppDir: the hello app changed")
	}
	return testkit.WriteApp(t, src)
}

type slowResult struct {
	body string
	err  error
}

// slowRequest sends GET /slow?ms= in the background.
func slowRequest(base string, ms int) <-chan slowResult {
	out := make(chan slowResult, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("%s/slow?ms=%d", base, ms))
		if err != nil {
			out <- slowResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- slowResult{string(b), err}
	}()
	return out
}

// waitInFlight waits until the slot's app has a request in flight.
func waitInFlight(t *testing.T, s *Slot) {
	t.Helper()
	waitUntil(t, "a request in flight", func() bool { t := s.target.Load(); return t != nil && t.up.Active() > 0 })
}

// waitUntil polls cond until it holds, failing the test after 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
	}
}

// TestDrainHoldsNoLock: while the previous app drains a slow request, the
// slot's lock is free (a restart of the new app does not wait for the
// drain), and a stop ends the drain and stops both apps.
func TestDrainHoldsNoLock(t *testing.T) {
	s, base := newSlot(t)
	dir := slowAppDir(t)
	if err := s.Run(Release{ID: "r1", Dir: dir, Command: "node server.js"}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitHTTP(t, base+"/health", 200, 10*time.Second)
	slow := slowRequest(base, 30000)
	waitInFlight(t, s)
	c, err := s.Launch(Release{ID: "r2", Dir: dir, Command: "node server.js"})
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/health", c.Port()), 200, 10*time.Second)
	promoted := make(chan struct{})
	go func() { s.Promote(context.Background(), c, time.Minute); close(promoted) }()
	waitUntil(t, "the swap", func() bool { return s.Status().Release == "r2" })

	start := time.Now()
	if !s.Restart() {
		t.Fatal("Restart found no app")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a restart during the drain took %s", d)
	}
	select {
	case <-promoted:
		t.Fatal("the drain ended before the slow request")
	default:
	}
	s.Stop(time.Second)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("a stop during the drain returned after %s", d)
	}
	<-promoted
	if n := len(s.sup.List()); n != 0 {
		t.Fatalf("%d processes after the stop", n)
	}
	if r := <-slow; r.err == nil && r.body == "slow done" {
		t.Fatal("the slow request finished: the stop did not end the drain")
	}
}

func TestShellArgv(t *testing.T) {
	for line, want := range map[string]string{
		"node server.js":          "exec node server.js",
		"npm start":               "exec npm start",
		"npm run build && node x": "npm run build && node x",
		"FOO=1 node x":            "FOO=1 node x",
		"node $MAIN":              "node $MAIN",
		"node 'a b.js'":           "node 'a b.js'",
	} {
		if got := ShellArgv(line); len(got) != 3 || got[0] != "sh" || got[1] != "-c" || got[2] != want {
			t.Errorf("ShellArgv(%q) = %q, want sh -c %q", line, got, want)
		}
	}
}

// TestProxyLogsToTheSlotsLogger: what the slot's proxy cannot answer to
// anyone (a panic) goes to the logger the agent gave, not slog's default.
func TestProxyLogsToTheSlotsLogger(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := Listen(Config{Name: "a", Bind: "127.0.0.1", Port: testkit.FreePort(t), Log: log}, supervisor.New(t.TempDir(), logs.Options{}, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if s.srv.Log != log {
		t.Fatal("the relay does not log to the slot's logger")
	}
}

// TestStopCutsTheStopOfAPreviousApp: a Stop with a short grace, while the
// previous app of a Promote is being stopped with the full kill timeout
// (it ignores SIGTERM), returns within that grace plus a little, with the
// previous app gone.
func TestStopCutsTheStopOfAPreviousApp(t *testing.T) {
	testkit.NeedNode(t)
	sup := supervisor.New(t.TempDir(), logs.Options{}, 0)
	pol := supervisor.DefaultPolicy()
	pol.KillTimeout = time.Minute
	s, err := Listen(Config{Name: "a", Bind: "127.0.0.1", Port: testkit.FreePort(t), Policy: pol, BaseEnv: os.Environ()}, sup)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()); sup.Close(time.Second) })
	stubborn := strings.Replace(testkit.HelloApp, "process.on('SIGTERM', () => server.close(() => process.exit(0)));", "process.on('SIGTERM', () => {});", 1)
	dir := testkit.WriteApp(t, stubborn)
	launch := func(id string) *Candidate {
		t.Helper()
		c, err := s.Launch(Release{ID: id, Dir: dir, Command: "node server.js"})
		if err != nil {
			t.Fatal(err)
		}
		testkit.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/health", c.Port()), 200, 10*time.Second)
		return c
	}
	old := launch("r1")
	s.Promote(context.Background(), old, 0)
	oldPID := old.Process().Info().PID
	promoted := make(chan struct{})
	go func() { s.Promote(context.Background(), launch("r2"), 0); close(promoted) }()
	waitUntil(t, "the stop of r1", func() bool { return old.Process().Info().Status == supervisor.Stopping })
	start := time.Now()
	s.Stop(300 * time.Millisecond)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Stop(300ms) took %s", d)
	}
	if testkit.PIDAlive(oldPID) {
		t.Fatalf("the previous app (pid %d) survived the stop", oldPID)
	}
	<-promoted
}

// TestAwaitedAppIsStartingNotEmpty: a slot whose app has not started yet
// answers 503 "starting" with Retry-After everywhere (its /health too), is
// not healthy and shows the release launching; the app serving, or a fall
// back to the placeholder, ends it.
func TestAwaitedAppIsStartingNotEmpty(t *testing.T) {
	testkit.NeedNode(t)
	s, base := newSlot(t)
	s.Await(Awaited{Release: "r1", Reason: "release r1 starts once PostgreSQL is ready"})
	for _, path := range []string{"/", "/health"} {
		resp, body := get(t, base+path)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "the app is starting") ||
			!strings.Contains(body, "starts once PostgreSQL is ready") || strings.Contains(body, "ready for deployment") {
			t.Fatalf("%s while awaited: %d %q %s", path, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if ok, why := s.Serving(context.Background()); ok || !strings.Contains(why, "starting") {
		t.Errorf("Serving while awaited: %v %q", ok, why)
	}
	if st := s.Status(); st.Type != "app" || st.Release != "r1" || st.Process == nil || st.Process.Status != supervisor.Launching ||
		st.Error != "release r1 starts once PostgreSQL is ready" {
		t.Errorf("Status while awaited: %+v", st)
	}

	// It fails to come back: the placeholder, with the reason.
	s.SetError("release r1 could not be started")
	if resp, body := get(t, base+"/"); resp.StatusCode != 200 || !strings.Contains(body, "ready for deployment") {
		t.Fatalf("after the fall back: %d %s", resp.StatusCode, body)
	}

	// Awaited again, then its app serves.
	s.Await(Awaited{Release: "r1", Reason: "release r1 is starting"})
	if err := s.Run(Release{ID: "r1", Dir: testkit.WriteApp(t, testkit.HelloApp), Command: "node server.js"}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitHTTP(t, base+"/health", 200, 10*time.Second)
	if st := s.Status(); st.Error != "" || st.Process == nil || st.Process.Name != "slot-a@r1" {
		t.Errorf("Status once the app serves: %+v", st)
	}
}
