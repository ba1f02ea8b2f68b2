// Package slot owns one deployment slot's public port for the agent's whole
// life: it answers with an in-process placeholder page while the slot is
// empty, and reverse-proxies to the slot's app (HTTP, WebSocket upgrades and
// streamed responses) on an internal port once one runs.
package slot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder-slots/coder-slots/agent/internal/envpath"
	"github.com/coder-slots/coder-slots/agent/logs"
	"github.com/coder-slots/coder-slots/agent/relay"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// Config describes one slot.
type Config struct {
	// Name is the slot's letter, "a" to "e".
	Name string
	// Bind is the address the public port listens on.
	Bind string
	// Port is the slot's public port.
	Port int
	// URL is where users reach the slot (SLOT_<X>_URL); may be empty.
	URL string
	// AdminURL links the placeholder to the admin panel; may be empty.
	AdminURL string
	// Policy is the restart policy of the slot's app.
	Policy supervisor.Policy
	// BaseEnv is the environment every app inherits, as "KEY=value".
	BaseEnv []string
	// DBEnv connects the apps to the slot's own database (DATABASE_URL,
	// PG*); its values are secrets. A release's env overrides it.
	DBEnv map[string]string
	// Log receives what the slot's proxy cannot answer to anyone (a
	// handler's panic); nil means slog.Default().
	Log *slog.Logger
	// Observe, when set, is told of every request proxied to the app when
	// its response header is sent: its status code, when it came and the
	// time it took (a stream or a WebSocket is counted as it starts), and
	// whether the slot answered it itself (503: the app was down).
	Observe func(slot string, r relay.Response)
	// Await, when its Release is set, is the deployed app the slot brings
	// back (the agent's start): the slot answers as Await says from its
	// first request.
	Await Awaited
	// IdleTimeout and MaxConns are the proxy's (relay.Server's; 0: its
	// defaults, no cap); Refused, when set, is told of each connection
	// closed over the cap.
	IdleTimeout time.Duration
	MaxConns    int
	Refused     func(slot string)
}

// Release is a runnable version of an app: a directory, a start command line
// (run with sh -c) and its own environment, or a static site's folder.
type Release struct {
	ID      string
	Dir     string
	Command string
	Env     map[string]string
	// Path lists folders put first on the app's PATH.
	Path []string
	// Static, when set, is the folder of a static site the agent serves
	// itself (no process; Command is ignored); with SPA, a path that names
	// no file gets its index.html.
	Static string
	SPA    bool
	// Language and Plan describe the release for status (see
	// buildpack.Plan.Describe); empty for releases of older agents.
	Language string
	Plan     string
}

// ProcessName is the supervisor's name for the app of slot name.
func ProcessName(name string) string { return "slot-" + name }

// Slot is one slot: its listener, its server and its current app.
type Slot struct {
	cfg Config
	sup *supervisor.Supervisor
	ln  net.Listener
	srv *relay.Server

	mu       sync.Mutex // serialises changes of target and retiring
	target   atomic.Pointer[target]
	retiring map[*target]*retiree // apps that lost the traffic and are still being drained or stopped
	errMsg   atomic.Pointer[string]
	waiting  atomic.Pointer[Awaited] // the app that has not started yet; see Await
}

// Awaited is a slot's app that has not started yet.
type Awaited struct {
	// Release is the release's ID.
	Release string
	// Reason says what it waits for.
	Reason string
}

// retiree is an app being drained and stopped outside the slot's lock.
type retiree struct {
	cut  chan struct{} // closed by Stop: end the drain now
	gone chan struct{} // closed once the app is stopped
}

// target is the app a slot proxies to: a supervised process, or (site
// set, proc nil) a static site the agent serves on the internal port.
type target struct {
	release Release
	port    int
	proc    *supervisor.Process
	site    *site
	up      *relay.Upstream
}

// stop ends the target within grace: its process, or its site's server.
func (s *Slot) stop(t *target, grace time.Duration) {
	if t.site != nil {
		t.site.close()
		return
	}
	s.sup.Remove(t.proc.Spec().Name, grace)
}

// Listen binds the slot's public port and starts serving the placeholder.
func Listen(cfg Config, sup *supervisor.Supervisor) (*Slot, error) {
	addr := net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("slot %s: listen on %s: %w", cfg.Name, addr, err)
	}
	s := &Slot{cfg: cfg, sup: sup, ln: ln, retiring: map[*target]*retiree{}}
	if cfg.Await.Release != "" {
		s.Await(cfg.Await)
	}
	s.srv = &relay.Server{
		Route:       s.route,
		Local:       http.HandlerFunc(s.placeholder),
		Unavailable: http.HandlerFunc(s.unavailable),
		Log:         cfg.Log,
		Observe:     s.observe,
		IdleTimeout: cfg.IdleTimeout,
		MaxConns:    cfg.MaxConns,
	}
	if cfg.Refused != nil {
		s.srv.Refused = func() { cfg.Refused(cfg.Name) }
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Logs returns the log files of the slot's apps (every release's process
// writes to the same slot-<x> files).
func (s *Slot) Logs() (*logs.Sink, error) { return s.sup.Logs(ProcessName(s.cfg.Name)) }

// Addr is the address the slot listens on.
func (s *Slot) Addr() net.Addr { return s.ln.Addr() }

// Candidate is a release started beside the slot's app: it runs on its own
// internal port and gets no traffic until it is promoted.
type Candidate struct{ t *target }

// Port is the candidate's internal port (its PORT).
func (c *Candidate) Port() int { return c.t.port }

// Process is the candidate's supervised process; nil for a static site.
func (c *Candidate) Process() *supervisor.Process { return c.t.proc }

// Launch starts rel on a fresh internal port without sending traffic to it:
// its start command as a supervised process, or, for a static site, a
// server of the agent's own.
func (s *Slot) Launch(rel Release) (*Candidate, error) {
	if rel.Static != "" {
		return s.launchSite(rel)
	}
	if strings.TrimSpace(rel.Command) == "" {
		return nil, errors.New("empty start command")
	}
	if st, err := os.Stat(rel.Dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("release %s: directory %s is missing", rel.ID, rel.Dir)
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("choose an internal port: %w", err)
	}
	proc, err := s.sup.Add(supervisor.Spec{
		Name:     ProcessName(s.cfg.Name) + "@" + rel.ID,
		Log:      ProcessName(s.cfg.Name),
		Command:  ShellArgv(rel.Command),
		Dir:      rel.Dir,
		Env:      s.appEnv(rel, port),
		ShownEnv: s.shownEnv(rel, port),
		Secrets:  s.Secrets(rel.Env),
		Policy:   s.cfg.Policy,
	})
	if err != nil {
		return nil, err
	}
	proc.Start()
	up := relay.NewUpstream(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	return &Candidate{t: &target{release: rel, port: port, proc: proc, up: up}}, nil
}

// Promote sends the slot's traffic to c, lets the requests in flight to the
// previous app finish (up to drain, or until ctx ends), then stops the
// previous app.
func (s *Slot) Promote(ctx context.Context, c *Candidate, drain time.Duration) {
	s.Swap(c).Finish(ctx, drain)
}

// Previous is the app that served the slot before a Swap: it runs on,
// without new requests, until Finish stops it or Revert gives it the
// traffic back. A Stop of the slot meanwhile stops it too.
type Previous struct {
	s *Slot
	t *target // nil when the slot served its placeholder
}

// Swap sends the slot's traffic to c at once; the previous app keeps its
// requests in flight.
func (s *Slot) Swap(c *Candidate) *Previous {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.target.Swap(c.t)
	s.errMsg.Store(nil)
	s.waiting.Store(nil)
	if old != nil {
		s.retiring[old] = &retiree{cut: make(chan struct{}), gone: make(chan struct{})}
	}
	return &Previous{s: s, t: old}
}

// Finish lets the previous app's requests in flight finish (up to drain,
// until ctx ends, or until the slot is stopped), then stops it. The slot's
// lock is not held meanwhile.
func (p *Previous) Finish(ctx context.Context, drain time.Duration) {
	if p.t == nil {
		return
	}
	s := p.s
	s.mu.Lock()
	r := s.retiring[p.t]
	s.mu.Unlock()
	if r == nil {
		return // given the traffic back, or stopped with the slot
	}
	timer := time.NewTimer(drain)
	defer timer.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for p.t.up.Active() > 0 {
		select {
		case <-tick.C:
			continue
		case <-timer.C:
		case <-ctx.Done():
		case <-r.cut:
		}
		break
	}
	s.retire(p.t, r, 0)
}

// Revert gives the traffic back to the previous app when c still serves
// the slot, and stops c within grace (it was never meant to keep the
// traffic); it reports whether the previous app serves again.
func (p *Previous) Revert(c *Candidate, grace time.Duration) bool {
	s := p.s
	s.mu.Lock()
	r := s.retiring[p.t]
	back := (p.t == nil || r != nil) && s.target.CompareAndSwap(c.t, p.t)
	if back && r != nil {
		delete(s.retiring, p.t)
		close(r.gone)
	}
	s.mu.Unlock()
	s.stop(c.t, grace)
	return back
}

// retire stops t, marked as retiring with r, and unmarks it once it is
// gone. A stop of t already under way (a drain that ended) gets grace too,
// and is waited for.
func (s *Slot) retire(t *target, r *retiree, grace time.Duration) {
	s.stop(t, grace)
	if t.proc != nil {
		t.proc.StopWithin(grace)
	}
	s.mu.Lock()
	if s.retiring[t] == r {
		delete(s.retiring, t)
		close(r.gone)
	}
	s.mu.Unlock()
}

// Discard stops a candidate that was not promoted, waiting at most grace
// before SIGKILL: it never had traffic to finish.
func (s *Slot) Discard(c *Candidate, grace time.Duration) {
	s.stop(c.t, grace)
}

// Run starts release as the slot's app and sends the slot's traffic to it
// at once, replacing the app that ran before (no health gate: rehydrate).
func (s *Slot) Run(rel Release) error {
	c, err := s.Launch(rel)
	if err != nil {
		return err
	}
	s.Promote(context.Background(), c, 0)
	return nil
}

// Retire stops c if it still serves the slot and brings back the
// placeholder showing msg; it reports whether it did (a deploy may have
// replaced c meanwhile).
func (s *Slot) Retire(c *Candidate, msg string) bool {
	s.mu.Lock()
	if !s.target.CompareAndSwap(c.t, nil) {
		s.mu.Unlock()
		return false
	}
	r := &retiree{cut: make(chan struct{}), gone: make(chan struct{})}
	s.retiring[c.t] = r
	s.SetError(msg)
	s.mu.Unlock()
	s.retire(c.t, r, 0)
	return true
}

// Stop stops the app, if any, and every previous app still draining, and
// brings back the placeholder; grace shortens the wait before SIGKILL (see
// supervisor.Process.StopWithin), also of stops already under way. It
// returns once they are all gone.
func (s *Slot) Stop(grace time.Duration) {
	s.mu.Lock()
	if t := s.target.Swap(nil); t != nil {
		s.retiring[t] = &retiree{cut: make(chan struct{}), gone: make(chan struct{})}
	}
	s.waiting.Store(nil)
	all := maps.Clone(s.retiring)
	for _, r := range all {
		select { // closed under s.mu only
		case <-r.cut:
		default:
			close(r.cut)
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for t, r := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.retire(t, r, grace)
			<-r.gone
		}()
	}
	wg.Wait()
}

// Restart restarts the app's process; it reports false when the slot has no
// app. The stop and start happen outside the slot's lock: a Stop meanwhile
// removes the process, which then never starts again.
func (s *Slot) Restart() bool {
	t := s.target.Load()
	if t == nil {
		return false
	}
	if t.proc != nil {
		t.proc.Restart()
	}
	return true
}

// SetError shows msg on the placeholder page and in the slot's status, for
// an app that could not be brought back; empty clears it. A slot that
// awaited its app (see Await) serves its placeholder again.
func (s *Slot) SetError(msg string) {
	s.waiting.Store(nil)
	if msg == "" {
		s.errMsg.Store(nil)
		return
	}
	s.errMsg.Store(&msg)
}

// Await says that the slot has a deployed app that has not started yet
// (the agent's start, or the app waits for its database). Until an app
// serves the slot, the slot is stopped or falls back to its placeholder
// (SetError, Retire), it answers every request with 503, a Retry-After and
// a page saying that the app is starting, never with the empty slot's
// placeholder, it is not healthy (Serving), and its Status shows the
// release launching, with the reason as its error.
func (s *Slot) Await(app Awaited) {
	s.waiting.Store(&app)
}

// Shutdown stops accepting requests, lets in-flight ones finish until ctx
// ends, then closes the port and every connection. The app keeps running
// until Stop.
func (s *Slot) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	// Serve may not have taken the listener yet (a start that fails just
	// after the slots bound): the port must be free when Shutdown returns.
	_ = s.ln.Close()
	if err != nil {
		return fmt.Errorf("slot %s: %w", s.cfg.Name, err)
	}
	return nil
}

// Status is a snapshot of a slot.
type Status struct {
	Name string `json:"name"`
	Port int    `json:"port"`
	URL  string `json:"url"`
	// Type is "placeholder", "app" or "static" (a site the agent serves).
	Type    string            `json:"type"`
	Release string            `json:"release,omitempty"`
	Error   string            `json:"error,omitempty"`
	Process *supervisor.Info  `json:"process,omitempty"`
	Dir     string            `json:"dir,omitempty"`
	Command string            `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// Language and Plan: what the app is and how it was installed, built
	// and started.
	Language string `json:"language,omitempty"`
	Plan     string `json:"plan,omitempty"`
}

// Status describes the slot; env values are masked.
func (s *Slot) Status() Status {
	st := Status{Name: s.cfg.Name, Port: s.cfg.Port, URL: s.cfg.URL, Type: "placeholder"}
	if msg := s.errMsg.Load(); msg != nil {
		st.Error = *msg
	}
	if w := s.waiting.Load(); w != nil && s.target.Load() == nil {
		st.Type, st.Release, st.Error = "app", w.Release, w.Reason
		st.Process = &supervisor.Info{Name: ProcessName(s.cfg.Name) + "@" + w.Release, Status: supervisor.Launching, Reason: w.Reason}
	}
	if t := s.target.Load(); t != nil {
		st.Type, st.Release = "app", t.release.ID
		st.Dir, st.Command = t.release.Dir, t.release.Command
		st.Language, st.Plan = t.release.Language, t.release.Plan
		if t.proc != nil {
			info := t.proc.Info()
			st.Process = &info
		} else {
			st.Type, st.Dir = "static", t.release.Static
		}
		st.Env = Mask(t.release.Env)
	}
	return st
}

// Serving reports whether the slot answers requests usefully: a placeholder
// always does, an app when its process is online and answers GET /health
// with a status below 500.
func (s *Slot) Serving(ctx context.Context) (bool, string) {
	t := s.target.Load()
	if w := s.waiting.Load(); t == nil && w != nil {
		return false, "app is starting: " + w.Reason
	}
	if t == nil {
		return true, "placeholder"
	}
	if t.proc != nil {
		if info := t.proc.Info(); info.Status != supervisor.Online {
			return false, "app is " + string(info.Status)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/health", t.port), nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := healthClient.Do(req)
	if err != nil {
		return false, "app does not answer: " + err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return false, fmt.Sprintf("app answers /health with %d", resp.StatusCode)
	}
	return true, "app"
}

var healthClient = &http.Client{Timeout: 3 * time.Second}

// route is the upstream of the slot's next request: its app, or nil for
// the placeholder.
func (s *Slot) route() *relay.Upstream {
	if t := s.target.Load(); t != nil {
		return t.up
	}
	return nil
}

func (s *Slot) appEnv(rel Release, port int) []string {
	return append(envpath.Prepend(s.BuildEnv(rel.Env), rel.Path), "PORT="+strconv.Itoa(port))
}

// BuildEnv is the environment of the install and build commands of a
// release whose env is env: the one its app gets (the base env, the
// database's, env, SLOT_NAME and SLOT_URL), without PORT, which only the
// running app has.
func (s *Slot) BuildEnv(env map[string]string) []string {
	out := append([]string{}, s.cfg.BaseEnv...)
	for _, vars := range []map[string]string{s.cfg.DBEnv, env} {
		keys := make([]string, 0, len(vars))
		for k := range vars {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, k+"="+vars[k])
		}
	}
	return append(out, "SLOT_NAME="+s.cfg.Name, "SLOT_URL="+s.cfg.URL)
}

// Secrets are the values a release with env env must never show in logs:
// its env's and the database's (see logs.SecretValues).
func (s *Slot) Secrets(env map[string]string) []string {
	return append(logs.SecretValues(env), logs.SecretValues(s.cfg.DBEnv)...)
}

// ShellArgv is how a start command line runs: with sh -c. A simple command (no
// shell syntax) is exec'd by the shell, so no sh stays between the
// supervisor and the app: one process less, and signals reach the app.
func ShellArgv(line string) []string {
	if strings.ContainsAny(line, "|&;<>()$`\\\"'*?[]#~=%{}\n") {
		return []string{"sh", "-c", line}
	}
	return []string{"sh", "-c", "exec " + line}
}

// shownEnv is the app's own environment with the database's and the
// release's values masked.
func (s *Slot) shownEnv(rel Release, port int) map[string]string {
	env := map[string]string{}
	maps.Copy(env, Mask(s.cfg.DBEnv))
	maps.Copy(env, Mask(rel.Env))
	env["PORT"], env["SLOT_NAME"], env["SLOT_URL"] = strconv.Itoa(port), s.cfg.Name, s.cfg.URL
	return env
}

// Mask returns env with every value replaced by a mask.
func Mask(env map[string]string) map[string]string {
	if len(env) == 0 {
		return nil
	}
	out := make(map[string]string, len(env))
	for k := range env {
		out[k] = "********"
	}
	return out
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
