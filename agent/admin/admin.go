// Package admin is the agent's HTTP API (docs/api.md): the old panel's
// endpoints with their old shapes, deploys, the agent's health, the slots'
// health for Coder's app healthchecks, Prometheus metrics and the web UI.
// It is served on the admin port (for browsers, with cross-origin
// protection) and on the control socket (for the CLI).
package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/logs"
	"github.com/coder-slots/coder-slots/agent/slot"
	"github.com/coder-slots/coder-slots/agent/state"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// About describes the running agent.
type About struct {
	// Status is "ok", or "degraded" when there are Warnings.
	Status  string `json:"status"`
	Version string `json:"version"`
	// Role is "entrypoint" (the container's PID 1, running the Coder agent
	// too) or "service" (beside a Coder agent, as the module starts it).
	Role string `json:"role"`
	// Instance is the coder-slots module instance that started a service.
	Instance  string    `json:"instance,omitempty"`
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
	Bind      string    `json:"bind"`
	AdminPort int       `json:"admin_port"`
	DataDir   string    `json:"data_dir"`
	LogDir    string    `json:"log_dir"`
	StatePath string    `json:"state_path"`
	// Warnings are problems found at start, such as a state file that was
	// unusable and moved aside.
	Warnings []string `json:"warnings,omitempty"`
}

// Backend is what the API needs from the agent.
type Backend interface {
	About() About
	Slots() []slot.Status
	// Processes are the supervised processes that are not slot apps.
	Processes() []supervisor.Info
	SlotHealth(ctx context.Context, name string) (bool, string)
	StopSlot(name string) error
	RestartSlot(name string) (string, error)
	// Logs returns the log files of a slot (by letter) or a process name.
	Logs(name string) (*logs.Sink, error)
	// Specs are the specs of every supervised process.
	Specs() []supervisor.Spec
	// Slot returns a copy of a slot's saved state.
	Slot(name string) state.Slot
}

// API serves the admin endpoints.
type API struct {
	b   Backend
	d   Deploys
	log *slog.Logger
	mux *router
	// hist is the Backend's history, when it keeps one.
	hist Histories
}

// New returns the API over backend b and deployer d; m gets the
// per-process metrics and is served at /metrics.
func New(b Backend, d Deploys, m *Metrics, log *slog.Logger) *API {
	a := &API{b: b, d: d, log: log, mux: newRouter()}
	a.routes()
	a.deployRoutes()
	a.legacyRoutes()
	a.metricsRoutes(m)
	a.dbRoutes()
	a.ecosystemRoutes()
	a.historyRoutes()
	a.gitRoutes()
	a.followRoutes()
	a.uiRoutes()
	return a
}

// Browser is the handler for the admin port: state-changing requests must
// be same-origin (Sec-Fetch-Site, then Origin against Host) and JSON, so a
// page on a sibling subdomain (another slot's app) cannot drive the agent
// through the user's browser, not even with a "simple" form post.
//
// Behind an app proxy that rewrites Host, a browser that sends no
// Sec-Fetch-Site (plain http) is judged by Origin alone; trusted lists the
// panel's own public origins (ADMIN_URL) so that case works too. Before
// that, a request whose Host hosts does not allow is refused (421), so that
// a DNS-rebinding page, same-origin to the browser, cannot drive it.
func (a *API) Browser(hosts Hosts, trusted ...string) (http.Handler, error) {
	cop := http.NewCrossOriginProtection()
	for _, origin := range trusted {
		if err := cop.AddTrustedOrigin(origin); err != nil {
			return nil, fmt.Errorf("trusted origin %q: %w", origin, err)
		}
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused", "state-changing requests must come from the admin panel itself")
	}))
	return hosts.check(a.log, cop.Handler(requireJSON(a.mux))), nil
}

// HeaderTimeout bounds the reading of a request's header on the admin
// port and the control socket, counted from the connection's start (or
// from its next request's first byte).
const HeaderTimeout = 30 * time.Second

// NewServer is the HTTP server of the admin port or the control socket
// for handler h: a request's header must come within HeaderTimeout, and a
// kept-alive connection is closed after idle without a request.
func NewServer(h http.Handler, idle time.Duration) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: HeaderTimeout, IdleTimeout: idle}
}

// requireJSON refuses state-changing requests whose body is not declared
// JSON (HTML forms can only send form encodings and text/plain).
func requireJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "the body must be JSON", "send Content-Type: application/json")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Control is the handler for the control socket (the CLI): the socket's
// file mode is the access control, and the only place where env values
// may be revealed (GET /api/ecosystem?reveal=1).
func (a *API) Control() http.Handler { return markControl(a.mux) }

func (a *API) routes() {
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("GET /api/slots", a.slots)
	a.mux.HandleFunc("GET /api/processes", a.processes)
	a.mux.HandleFunc("GET /api/slots/{slot}/health", a.withSlot(a.slotHealth))
	a.mux.HandleFunc("GET /api/slots/{slot}/logs", a.logs)
	a.mux.HandleFunc("POST /api/restart/{slot}", a.withSlot(a.restart))
	a.mux.HandleFunc("POST /api/processes/{slot}/stop", a.withSlot(a.stop))
	a.mux.HandleFunc("GET /api/config", a.config)
	a.mux.HandleFunc(catchAll, a.notFound)
}

// Error is the JSON body of every error answer.
type Error struct {
	Error   string `json:"error"`
	Details string `json:"details,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg, details string) {
	writeJSON(w, code, Error{Error: msg, Details: details})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (a *API) withSlot(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("slot")
		if !config.ValidSlot(name) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("unknown slot %q", name), "slots are "+strings.Join(config.SlotNames, ", "))
			return
		}
		h(w, r, name)
	}
}

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.b.About())
}

// SlotList is the answer of GET /api/slots.
type SlotList struct {
	Slots []slot.Status `json:"slots"`
}

func (a *API) slots(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, SlotList{Slots: a.b.Slots()})
}

// ProcessRow is one process in GET /api/processes: the old PM2-backed
// fields (name, status, cpu, memory, uptime, restarts, pid, type) plus the
// slot, its URL, release and error.
type ProcessRow struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	// CPU is percent of one core, for the whole process tree.
	CPU float64 `json:"cpu"`
	// Memory is the RSS of the whole process tree, in bytes.
	Memory uint64 `json:"memory"`
	// Uptime is milliseconds since the process came online, 0 when not online.
	Uptime   int64  `json:"uptime"`
	Restarts int    `json:"restarts"`
	PID      int    `json:"pid"`
	Type     string `json:"type"`
	Slot     string `json:"slot,omitempty"`
	URL      string `json:"url,omitempty"`
	Release  string `json:"release,omitempty"`
	Error    string `json:"error,omitempty"`
	// Language and Plan of a slot's release: what the app is and how it
	// was installed, built and started.
	Language string `json:"language,omitempty"`
	Plan     string `json:"plan,omitempty"`
}

// ProcessList is the answer of GET /api/processes.
type ProcessList struct {
	Processes []ProcessRow `json:"processes"`
	Total     int          `json:"total"`
	Online    int          `json:"online"`
}

func (a *API) processes(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.processList())
}

func (a *API) processList() ProcessList {
	about := a.b.About()
	self := ProcessRow{Name: "admin", Status: string(supervisor.Online), PID: about.PID, Type: "admin",
		Uptime: time.Since(about.StartedAt).Milliseconds()}
	if p, err := process.NewProcess(int32(os.Getpid())); err == nil {
		if m, err := p.MemoryInfo(); err == nil {
			self.Memory = m.RSS
		}
	}
	rows := []ProcessRow{self}
	for _, s := range a.b.Slots() {
		row := ProcessRow{Name: slot.ProcessName(s.Name), Type: s.Type, Slot: s.Name, URL: s.URL, Release: s.Release, Error: s.Error,
			Language: s.Language, Plan: s.Plan}
		if s.Process != nil {
			fillFromInfo(&row, *s.Process)
		} else {
			// The placeholder and a static site are served in-process by the agent.
			row.Status, row.PID, row.Uptime = self.Status, self.PID, self.Uptime
		}
		rows = append(rows, row)
	}
	for _, info := range a.b.Processes() {
		row := ProcessRow{Name: info.Name, Type: info.Name}
		fillFromInfo(&row, info)
		rows = append(rows, row)
	}
	list := ProcessList{Processes: rows, Total: len(rows)}
	for _, r := range rows {
		if r.Status == string(supervisor.Online) {
			list.Online++
		}
	}
	return list
}

func fillFromInfo(row *ProcessRow, info supervisor.Info) {
	row.Status, row.CPU, row.Memory = string(info.Status), info.CPU, info.Memory
	row.Uptime, row.Restarts, row.PID = info.Uptime().Milliseconds(), info.Restarts, info.PID
	if row.Error == "" {
		row.Error = info.Reason
	}
}

// Health is the answer of GET /api/slots/:slot/health.
type Health struct {
	Status string `json:"status"`
	Slot   string `json:"slot"`
	Detail string `json:"detail"`
}

func (a *API) slotHealth(w http.ResponseWriter, r *http.Request, name string) {
	ctx, cancel := context.WithTimeout(r.Context(), 4*time.Second)
	defer cancel()
	ok, detail := a.b.SlotHealth(ctx, name)
	if !ok {
		writeJSON(w, http.StatusServiceUnavailable, Health{Status: "unhealthy", Slot: name, Detail: detail})
		return
	}
	writeJSON(w, http.StatusOK, Health{Status: "healthy", Slot: name, Detail: detail})
}

// Result is the answer of a state-changing request.
type Result struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
}

func (a *API) restart(w http.ResponseWriter, _ *http.Request, name string) {
	msg, err := a.b.RestartSlot(name)
	if err != nil {
		writeActionError(w, "restart failed", err)
		return
	}
	writeJSON(w, http.StatusOK, Result{Success: true, Message: msg})
}

func (a *API) stop(w http.ResponseWriter, _ *http.Request, name string) {
	if err := a.b.StopSlot(name); err != nil {
		writeActionError(w, "stop failed", err)
		return
	}
	writeJSON(w, http.StatusOK, Result{Success: true, Message: "slot " + name + " is back to its placeholder"})
}

// writeActionError answers 409 while a deploy runs on the slot, else 500.
func writeActionError(w http.ResponseWriter, msg string, err error) {
	var busy deploy.ErrBusy
	if errors.As(err, &busy) {
		writeDeployError(w, err)
		return
	}
	writeError(w, http.StatusInternalServerError, msg, err.Error())
}

// logs streams a slot's (or a process's) combined log as text: the last n
// lines (?n=, default 100), then, with ?follow=1, every new line until the
// client goes away.
func (a *API) logs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("slot")
	if !config.ValidSlot(name) && !a.isProcess(name) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown slot or process %q", name), "slots are "+strings.Join(config.SlotNames, ", "))
		return
	}
	n := 100
	if s := r.URL.Query().Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > 100000 {
			writeError(w, http.StatusBadRequest, "invalid n", "n is a number of lines from 0 to 100000")
			return
		}
		n = v
	}
	sink, err := a.b.Logs(name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot read logs", err.Error())
		return
	}
	follow := r.URL.Query().Get("follow") == "1"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	bw := bufio.NewWriter(w)
	if !follow {
		lines, err := sink.Tail(n)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			writeError(w, http.StatusInternalServerError, "cannot read logs", err.Error())
			return
		}
		writeLines(bw, lines)
		_ = bw.Flush()
		return
	}
	lines, next, cancel, err := sink.Follow(n)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot follow logs", err.Error())
		return
	}
	defer cancel()
	flusher, _ := w.(http.Flusher)
	writeLines(bw, lines)
	for {
		_ = bw.Flush()
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case line, ok := <-next:
			if !ok {
				return
			}
			writeLines(bw, []string{line})
		case <-r.Context().Done():
			return
		}
	}
}

func writeLines(w *bufio.Writer, lines []string) {
	for _, l := range lines {
		_, _ = w.WriteString(l)
		_ = w.WriteByte('\n')
	}
}

func (a *API) isProcess(name string) bool {
	for _, p := range a.b.Processes() {
		if p.Name == name {
			return true
		}
	}
	return false
}

// ProcessConfig is the answer of GET /api/config: the generated process
// config, with secret environment values masked.
type ProcessConfig struct {
	Processes []ProcessSpec `json:"processes"`
}

// ProcessSpec is one process of the generated config.
type ProcessSpec struct {
	supervisor.Spec
	OutFile string `json:"out_file"`
	ErrFile string `json:"error_file"`
	LogFile string `json:"log_file"`
}

func (a *API) config(w http.ResponseWriter, _ *http.Request) {
	out := ProcessConfig{Processes: []ProcessSpec{}}
	for _, spec := range a.b.Specs() {
		ps := ProcessSpec{Spec: spec}
		if sink, err := a.b.Logs(spec.Log); err == nil {
			ps.OutFile, ps.ErrFile, ps.LogFile = sink.Paths()
		}
		out.Processes = append(out.Processes, ps)
	}
	writeJSON(w, http.StatusOK, out)
}
