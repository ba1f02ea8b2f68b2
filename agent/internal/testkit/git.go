package testkit

import (
	"bufio"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/reaper"
)

// Environment of the helper process that GitHTTPServer starts.
const (
	gitHTTPRootEnv = "TESTKIT_GIT_HTTP_ROOT"
	gitHTTPUserEnv = "TESTKIT_GIT_HTTP_USER"
	gitHTTPPassEnv = "TESTKIT_GIT_HTTP_PASSWORD"
	gitHTTPSlowEnv = "TESTKIT_GIT_HTTP_DELAY"
)

// A process started with TESTKIT_GIT_HTTP_ROOT set is the server of
// GitHTTPServer: it serves and exits, before any test (or TestMain) runs.
func init() {
	root, ok := os.LookupEnv(gitHTTPRootEnv)
	if !ok {
		return
	}
	delay, _ := time.ParseDuration(os.Getenv(gitHTTPSlowEnv))
	os.Exit(serveGitHTTP(root, os.Getenv(gitHTTPUserEnv), os.Getenv(gitHTTPPassEnv), delay))
}

type gitHTTPConfig struct {
	user, password string
	delay          time.Duration
}

// GitHTTPOption configures GitHTTPServer.
type GitHTTPOption func(*gitHTTPConfig)

// WithBasicAuth makes GitHTTPServer require HTTP basic auth with user and
// password (a token); other requests get 401 with a Basic challenge.
func WithBasicAuth(user, password string) GitHTTPOption {
	return func(c *gitHTTPConfig) { c.user, c.password = user, password }
}

// WithDelay makes GitHTTPServer wait d before it answers each request, so
// that a fetch lasts long enough to be watched while it runs.
func WithDelay(d time.Duration) GitHTTPOption {
	return func(c *gitHTTPConfig) { c.delay = d }
}

// GitHTTPServer serves the bare repositories under root over git's smart
// HTTP protocol (`git http-backend` through net/http/cgi, with
// GIT_PROJECT_ROOT=root and GIT_HTTP_EXPORT_ALL=1) and returns its base URL,
// http://127.0.0.1:PORT; root/app.git is then at BASE/app.git.
//
// net/http/cgi waits for its CGI children with exec.Cmd.Wait, which must not
// run in a process whose reaper loop calls wait4(-1). So the server runs in
// a separate process: the test binary itself (os.Args[0]) re-executed with
// TESTKIT_GIT_HTTP_ROOT set, which this package's init function turns into
// the server before any test runs; any test binary that imports testkit can
// therefore serve. The child is started through agent/reaper (so calling
// this starts the reaper's wait loop in the test process), stops when its
// stdin closes (the test process died) and is killed when the test ends.
func GitHTTPServer(t testing.TB, root string, opts ...GitHTTPOption) string {
	t.Helper()
	var cfg gitHTTPConfig
	for _, o := range opts {
		o(&cfg)
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "git-http.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		gitHTTPRootEnv+"="+abs, gitHTTPUserEnv+"="+cfg.user, gitHTTPPassEnv+"="+cfg.password, gitHTTPSlowEnv+"="+cfg.delay.String())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	child, err := reaper.Start(cmd)
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		t.Fatalf("start git http server: %v", err)
	}
	t.Cleanup(func() {
		inW.Close()
		_ = syscall.Kill(-child.Pid, syscall.SIGKILL)
		select {
		case <-child.Done():
		case <-time.After(10 * time.Second):
			t.Errorf("git http server (pid %d) did not exit", child.Pid)
		}
	})

	lines := make(chan string, 1)
	go func() {
		defer outR.Close()
		line, _ := bufio.NewReader(outR).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	select {
	case line := <-lines:
		if base, ok := strings.CutPrefix(line, "serving "); ok {
			return base
		}
		log, _ := os.ReadFile(logPath)
		t.Fatalf("git http server did not start (said %q):\n%s", line, log)
	case <-time.After(15 * time.Second):
		log, _ := os.ReadFile(logPath)
		t.Fatalf("git http server did not start within 15s:\n%s", log)
	}
	return ""
}

// serveGitHTTP is the server process of GitHTTPServer (delay: WithDelay). It prints
// "serving http://127.0.0.1:PORT" and serves until stdin closes.
func serveGitHTTP(root, user, password string, delay time.Duration) int {
	git, err := exec.LookPath("git")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	backend := &cgi.Handler{
		Path:       git,
		Args:       []string{"http-backend"},
		Env:        []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
		InheritEnv: []string{"PATH", "HOME", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL"},
		Stderr:     os.Stderr,
	}
	handler := http.Handler(backend)
	if user != "" || password != "" {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 ||
				subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
			backend.ServeHTTP(w, r)
		})
	}
	if delay > 0 {
		inner := handler
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(delay)
			inner.ServeHTTP(w, r)
		})
	}
	go func() {
		// The test process holds the other end of stdin: when it closes
		// (the test ended or died), stop.
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Printf("serving http://%s\n", ln.Addr())
	if err := http.Serve(ln, handler); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
