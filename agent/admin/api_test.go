package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/ecosystem"
	"github.com/coder-slots/coder-slots/agent/follow"
	"github.com/coder-slots/coder-slots/agent/gitpush"
	"github.com/coder-slots/coder-slots/agent/history"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/logs"
	"github.com/coder-slots/coder-slots/agent/postgres"
	"github.com/coder-slots/coder-slots/agent/slot"
	"github.com/coder-slots/coder-slots/agent/state"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// started is when the fake agent started.
var started = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeAgent is a Backend: slot a runs an app (release r1,
// waiting to restart after crashes), the others serve their placeholder.
type fakeAgent struct {
	appStart time.Time
	hist     *history.History
	db       *postgres.Status // nil: PostgreSQL is off
}

func (f *fakeAgent) About() About {
	return About{Status: "ok", Version: "test", PID: 4242, StartedAt: started, AdminPort: 9000}
}

func (f *fakeAgent) Slots() []slot.Status {
	var out []slot.Status
	for i, name := range config.SlotNames {
		st := slot.Status{Name: name, Port: 3001 + i, URL: "https://slot-" + name + "--dev--alice.example.com", Type: "placeholder"}
		if name == "a" {
			st.Type, st.Release, st.Dir = "app", "r1", "/data/slots/a/releases/r1"
			st.Process = &supervisor.Info{Name: "slot-a@r1", Status: supervisor.WaitingRestart, PID: 777, StartedAt: f.appStart,
				Restarts: 4, Unstable: 2, CPU: 12.5, Memory: 64 << 20, Reason: "exited with code 1"}
		}
		out = append(out, st)
	}
	return out
}

func (f *fakeAgent) Processes() []supervisor.Info {
	return []supervisor.Info{{Name: "coder-agent", Status: supervisor.Online, PID: 555, StartedAt: started, CPU: 1.5, Memory: 30 << 20}}
}

func (f *fakeAgent) SlotHealth(context.Context, string) (bool, string) { return true, "placeholder" }
func (f *fakeAgent) StopSlot(string) error                             { return nil }
func (f *fakeAgent) RestartSlot(name string) (string, error) {
	return "slot " + name + " restarted", nil
}
func (f *fakeAgent) Logs(string) (*logs.Sink, error) { return nil, errors.New("no logs in this test") }
func (f *fakeAgent) Specs() []supervisor.Spec        { return nil }
func (f *fakeAgent) Slot(string) state.Slot          { return state.Slot{} }

// Follower is nil: the follow endpoints are tested end to end.
func (f *fakeAgent) Follower() *follow.Follower { return nil }

// The fake agent keeps a history (it is a Histories).
func (f *fakeAgent) History(name string) *history.Slot { return f.hist.Slot(name) }

// The fake agent is a Databases: PostgreSQL is switched off unless db is set.
func (f *fakeAgent) Database(context.Context) postgres.Status {
	if f.db != nil {
		return *f.db
	}
	return postgres.Status{State: postgres.StateOff, Detail: "off in this test"}
}
func (f *fakeAgent) ResetDatabase(context.Context, string) (string, error) {
	return "", errors.New("PostgreSQL is off")
}

// The fake agent has git push deploys (it is a GitPush), none usable.
func (f *fakeAgent) GitRemote(string) (gitpush.Remote, error) {
	return gitpush.Remote{}, errors.New("no git in this test")
}
func (f *fakeAgent) Push(string, deploy.Push) (deploy.Record, error) {
	return deploy.Record{}, errors.New("no git in this test")
}
func (f *fakeAgent) PushWaiting(string) <-chan struct{} { return nil }
func (f *fakeAgent) RefUpdate(string, deploy.RefEvent) (string, error) {
	return "", errors.New("no git in this test")
}

// The fake agent is an Exporter: one placeholder, its env as given.
func (f *fakeAgent) Ecosystem(reveal bool) (ecosystem.File, error) {
	return ecosystem.File{Revealed: reveal, Apps: []ecosystem.App{{Name: "slot-a", Script: "slotagent",
		Env: map[string]string{"API_TOKEN": ecosystem.Secret("tok-1234567", reveal)}}}}, nil
}

// done is the one deploy the fake knows.
var done = deploy.Record{ID: "20260301T120000000-a", Slot: "a", Trigger: deploy.TriggerDeploy, Status: deploy.Succeeded,
	CreatedAt: started, FinishedAt: started.Add(42 * time.Second)}

// fakeDeploys knows one finished deploy, whose log is gone; a rollback
// finds a deploy running.
type fakeDeploys struct{}

func (fakeDeploys) Deploy(string, deploy.Request) (deploy.Record, error) { return done, nil }
func (fakeDeploys) Rollback(string, string, string) (deploy.Record, error) {
	return deploy.Record{}, deploy.ErrBusy{Running: done.ID}
}
func (fakeDeploys) SetEnv(string, map[string]string, []string, string) (map[string]string, *deploy.Record, error) {
	return nil, nil, nil
}
func (fakeDeploys) Get(id string) (deploy.Record, bool) { return done, id == done.ID }
func (fakeDeploys) List(string) []deploy.Record         { return []deploy.Record{done} }
func (fakeDeploys) Logs(string) ([]string, <-chan string, func(), error) {
	return nil, nil, nil, errors.New("log files are gone")
}

// newTestAPI is the API over a fakeAgent, with its metrics.
func newTestAPI(t *testing.T) (*API, *Metrics) {
	t.Helper()
	m := NewMetrics()
	f := &fakeAgent{appStart: time.Now().Add(-time.Minute), hist: history.New(config.SlotNames)}
	return New(f, fakeDeploys{}, m, slog.New(slog.DiscardHandler)), m
}

// call serves one request and decodes a JSON answer into v (if not nil).
func call(t *testing.T, h http.Handler, req *http.Request, v any) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if v != nil {
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q, body %s", req.Method, req.URL, ct, rec.Body)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("%s %s: %v\n%s", req.Method, req.URL, err, rec.Body)
		}
	}
	return rec
}

func TestLegacyProcessEndpoints(t *testing.T) {
	a, _ := newTestAPI(t)
	h := a.Control()

	var row ProcessRow
	if rec := call(t, h, httptest.NewRequest("GET", "/api/processes/a", nil), &row); rec.Code != 200 ||
		row.Name != "slot-a" || row.Slot != "a" || row.Status != "waiting-restart" || row.PID != 777 || row.Restarts != 4 || row.Memory != 64<<20 {
		t.Fatalf("GET /api/processes/a: %d %+v", rec.Code, row)
	}
	if rec := call(t, h, httptest.NewRequest("GET", "/api/processes/coder-agent", nil), &row); rec.Code != 200 || row.Name != "coder-agent" || row.PID != 555 {
		t.Fatalf("GET /api/processes/coder-agent: %d %+v", rec.Code, row)
	}
	var e Error
	if rec := call(t, h, httptest.NewRequest("GET", "/api/processes/zz", nil), &e); rec.Code != 404 || !strings.Contains(e.Error, `"zz"`) || !strings.Contains(e.Details, "slot-a") {
		t.Fatalf("unknown process: %d %+v", rec.Code, e)
	}

	// The old panel's status, decoded as an old script would.
	type legacyAnswer struct {
		PM2 struct {
			Name   string `json:"name"`
			PMID   int    `json:"pm_id"`
			PID    int    `json:"pid"`
			Status string `json:"status"`
			Monit  struct {
				CPU    float64 `json:"cpu"`
				Memory uint64  `json:"memory"`
			} `json:"monit"`
			Env struct {
				Status   string `json:"status"`
				Uptime   int64  `json:"pm_uptime"`
				Restarts int    `json:"restart_time"`
				Unstable int    `json:"unstable_restarts"`
				ExecMode string `json:"exec_mode"`
				Cwd      string `json:"pm_cwd"`
			} `json:"pm2_env"`
		} `json:"pm2"`
		Slot struct {
			Name, URL, Release, Error string
			Port                      int
		} `json:"slot"`
		Type string `json:"type"`
		URL  string `json:"url"`
	}
	var app, placeholder legacyAnswer
	rec := call(t, h, httptest.NewRequest("GET", "/api/processes/a/status", nil), &app)
	p := app.PM2
	if rec.Code != 200 || p.Name != "slot-a" || p.PMID != 1 || p.PID != 777 || p.Status != "waiting restart" ||
		p.Monit.CPU != 12.5 || p.Monit.Memory != 64<<20 || p.Env.Status != "waiting restart" || p.Env.Restarts != 4 ||
		p.Env.Unstable != 2 || p.Env.ExecMode != "fork_mode" || p.Env.Cwd != "/data/slots/a/releases/r1" {
		t.Fatalf("slot a status: %d %s", rec.Code, rec.Body)
	}
	if d := time.Since(time.UnixMilli(p.Env.Uptime)); d < time.Minute || d > time.Minute+10*time.Second {
		t.Fatalf("pm_uptime %d is not the app's start (%s ago)", p.Env.Uptime, d)
	}
	if app.Type != "app" || app.URL != "https://slot-a--dev--alice.example.com" || app.Slot.Name != "a" || app.Slot.Port != 3001 ||
		app.Slot.URL != app.URL || app.Slot.Release != "r1" || app.Slot.Error != "exited with code 1" {
		t.Fatalf("slot a status: %s", rec.Body)
	}

	rec = call(t, h, httptest.NewRequest("GET", "/api/processes/c/status", nil), &placeholder)
	p = placeholder.PM2
	if rec.Code != 200 || placeholder.Type != "placeholder" || p.Name != "slot-c" || p.PMID != 3 || p.PID != 4242 || p.Status != "online" ||
		p.Env.Uptime != started.UnixMilli() || placeholder.Slot.Port != 3003 || placeholder.Slot.Release != "" {
		t.Fatalf("slot c status: %d %s", rec.Code, rec.Body)
	}
	if rec := call(t, h, httptest.NewRequest("GET", "/api/processes/coder-agent/status", nil), &e); rec.Code != 404 || !strings.Contains(e.Error, "unknown slot") {
		t.Fatalf("status of a process that is no slot: %d %+v", rec.Code, e)
	}
}

// TestErrorsAreJSON: every refusal is {error, details} with its status.
func TestErrorsAreJSON(t *testing.T) {
	a, _ := newTestAPI(t)
	browser, err := a.Browser(NewHosts("http://example.com/", nil))
	if err != nil {
		t.Fatal(err)
	}
	post := func(path, contentType, body string) *http.Request {
		r := httptest.NewRequest("POST", path, strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		return r
	}
	crossSite := post("/api/processes/a/stop", "application/json", "{}")
	crossSite.Header.Set("Sec-Fetch-Site", "cross-site")
	for _, c := range []struct {
		name  string
		h     http.Handler
		req   *http.Request
		code  int
		error string
	}{
		{"unknown endpoint", a.Control(), httptest.NewRequest("GET", "/api/nothing", nil), 404, "no such endpoint"},
		{"unknown page", a.Control(), httptest.NewRequest("GET", "/nothing", nil), 404, "no such endpoint"},
		{"wrong method", a.Control(), httptest.NewRequest("DELETE", "/api/slots", nil), 405, "method not allowed"},
		{"GET of a POST endpoint", a.Control(), httptest.NewRequest("GET", "/api/slots/a/deploy", nil), 405, "method not allowed"},
		{"unknown slot", a.Control(), httptest.NewRequest("GET", "/api/slots/z/env", nil), 404, `unknown slot "z"`},
		{"unknown deploy", a.Control(), httptest.NewRequest("GET", "/api/deploys/nope", nil), 404, `unknown deploy "nope"`},
		{"log of an unknown deploy", a.Control(), httptest.NewRequest("GET", "/api/deploys/nope/log", nil), 404, `unknown deploy "nope"`},
		{"unreadable deploy log", a.Control(), httptest.NewRequest("GET", "/api/deploys/"+done.ID+"/log", nil), 500, "cannot read the deploy's log"},
		{"bad n", a.Control(), httptest.NewRequest("GET", "/api/slots/a/logs?n=x", nil), 400, "invalid n"},
		{"no JSON", a.Control(), post("/api/slots/a/deploy", "text/plain", "{}"), 415, "the body must be JSON"},
		{"broken JSON", a.Control(), post("/api/slots/a/deploy", "application/json", "{"), 400, "invalid JSON body"},
		{"unknown field", a.Control(), post("/api/slots/a/deploy", "application/json", `{"repository": "x"}`), 400, "invalid JSON body"},
		{"two objects", a.Control(), post("/api/slots/a/rollback", "application/json", "{} {}"), 400, "invalid JSON body"},
		{"body too large", a.Control(), post("/api/slots/a/env", "application/json", `{"set": {"A": "`+strings.Repeat("x", maxBody)+`"}}`), 413, "request body too large"},
		{"deploy running", a.Control(), post("/api/slots/a/rollback", "application/json", "{}"), 409, "a deploy is already running on this slot"},
		{"missing static file", a.Control(), httptest.NewRequest("GET", "/static/nothing.js", nil), 404, "no such file"},
		{"static folder", a.Control(), httptest.NewRequest("GET", "/static/", nil), 404, "no such file"},
		{"unknown page part", a.Control(), httptest.NewRequest("GET", "/?part=nothing", nil), 404, `no part "nothing"`},
		{"cross-site POST", browser, crossSite, 403, "cross-origin request refused"},
		{"form POST", browser, post("/api/restart/a", "application/x-www-form-urlencoded", "x=1"), 415, "the body must be JSON"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var e Error
			rec := call(t, c.h, c.req, &e)
			if rec.Code != c.code || !strings.Contains(e.Error, c.error) {
				t.Fatalf("%d %+v, want %d %q", rec.Code, e, c.code, c.error)
			}
		})
	}
	rec := call(t, a.Control(), httptest.NewRequest("PUT", "/api/slots/a/env", nil), nil)
	if allow := rec.Header().Get("Allow"); allow != "GET, POST, HEAD" {
		t.Fatalf("Allow: %q", allow)
	}
}

// TestMetrics: /metrics on both handlers has the hooks' series and the
// processes read from the Backend at the scrape.
func TestMetrics(t *testing.T) {
	a, m := newTestAPI(t)
	m.ObserveRequest("a", 200, 3*time.Millisecond)
	m.ObserveRequest("a", 200, 40*time.Millisecond)
	m.ObserveRequest("a", 503, time.Millisecond)
	m.ObserveRequest("b", 101, 2*time.Millisecond)
	m.ObserveDeploy(done)
	m.ObserveRefusedConn("c")
	browser, err := a.Browser(NewHosts("http://example.com/", nil))
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]http.Handler{"admin port": browser, "control socket": a.Control()} {
		rec := call(t, h, httptest.NewRequest("GET", "/metrics", nil), nil)
		if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
			t.Fatalf("%s: %d %s", name, rec.Code, rec.Header().Get("Content-Type"))
		}
		series := testkit.ParseMetrics(t, rec.Body)
		for s, want := range map[string]float64{
			`slotagent_slot_requests_total{class="2xx",code="200",slot="a"}`:                        2,
			`slotagent_slot_requests_total{class="5xx",code="503",slot="a"}`:                        1,
			`slotagent_slot_requests_total{class="1xx",code="101",slot="b"}`:                        1,
			`slotagent_slot_request_duration_seconds_count{slot="a"}`:                               3,
			`slotagent_slot_request_duration_seconds_bucket{slot="a",le="0.005"}`:                   2,
			`slotagent_deploys_total{result="succeeded",slot="a",trigger="deploy"}`:                 1,
			`slotagent_deploy_duration_seconds_sum{result="succeeded",trigger="deploy"}`:            42,
			`slotagent_deploy_duration_seconds_bucket{result="succeeded",trigger="deploy",le="30"}`: 0,
			`slotagent_deploy_duration_seconds_bucket{result="succeeded",trigger="deploy",le="60"}`: 1,
			`slotagent_process_up{process="slot-a",slot="a"}`:                                       0,
			`slotagent_process_up{process="slot-b",slot="b"}`:                                       1,
			`slotagent_process_up{process="admin",slot=""}`:                                         1,
			`slotagent_process_up{process="coder-agent",slot=""}`:                                   1,
			`slotagent_process_restarts_total{process="slot-a",slot="a"}`:                           4,
			`slotagent_process_cpu_percent{process="slot-a",slot="a"}`:                              12.5,
			`slotagent_process_resident_memory_bytes{process="slot-a",slot="a"}`:                    64 << 20,
			`slotagent_process_resident_memory_bytes{process="coder-agent",slot=""}`:                30 << 20,
			`slotagent_slot_info{release="r1",slot="a",type="app"}`:                                 1,
			`slotagent_slot_connections_refused_total{slot="c"}`:                                    1,
			`slotagent_slot_info{release="",slot="e",type="placeholder"}`:                           1,
		} {
			if got, ok := series[s]; !ok || got != want {
				t.Errorf("%s: %s = %v (present %v), want %v", name, s, got, ok, want)
			}
		}
		for _, s := range []string{`slotagent_reaped_orphans_total`, `process_resident_memory_bytes`, `go_goroutines`} {
			if _, ok := series[s]; !ok {
				t.Errorf("%s: no %s", name, s)
			}
		}
		if _, ok := series[`slotagent_process_cpu_percent{process="slot-b",slot="b"}`]; ok {
			t.Errorf("%s: a placeholder has a CPU series of its own", name)
		}
	}
}

// TestDashboardShowsPostgres: the panel shows PostgreSQL's state while it
// starts, then each database with its size.
func TestDashboardShowsPostgres(t *testing.T) {
	f := &fakeAgent{hist: history.New(config.SlotNames), db: &postgres.Status{State: postgres.StateStarting, Detail: "creating the cluster (initdb)", Host: postgres.Host, Port: 5432}}
	a := New(f, fakeDeploys{}, NewMetrics(), slog.New(slog.DiscardHandler))
	page := func(path string) string {
		rec := call(t, a.Control(), httptest.NewRequest("GET", path, nil), nil)
		if rec.Code != 200 {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	if b := page("/"); !strings.Contains(b, `<span class="badge st-starting">starting</span> <span class="muted">on 127.0.0.1:5432</span>`) ||
		!strings.Contains(b, "creating the cluster (initdb)") {
		t.Errorf("dashboard while PostgreSQL starts:\n%s", b)
	}
	f.db = &postgres.Status{State: postgres.StateOnline, Host: postgres.Host, Port: 5432, Version: 15, Databases: []postgres.Database{
		{Name: "slot_a", Slot: "a", User: "slot_a", Up: true, Size: 7 << 20},
		{Name: "workspace_db", User: "coder", Up: true, Size: 7<<20 + 1<<19},
	}}
	b := page("/?part=part-db")
	for _, want := range []string{"online", "version 15", `<td data-label="size">7.0 MiB</td>`, `<td data-label="size">7.5 MiB</td>`, "workspace_db"} {
		if !strings.Contains(b, want) {
			t.Errorf("part-db lacks %q:\n%s", want, b)
		}
	}
	if b := page("/?part=part-rows"); strings.Contains(b, "slot_a") {
		t.Errorf("the process rows measure the databases too:\n%s", b)
	}
}

// TestEcosystemRevealsOverTheControlSocketOnly: the admin port never
// reveals env values; the control socket does when asked.
func TestEcosystemRevealsOverTheControlSocketOnly(t *testing.T) {
	a, _ := newTestAPI(t)
	browser, err := a.Browser(Hosts{})
	if err != nil {
		t.Fatal(err)
	}
	req := func(path string) *http.Request {
		r := httptest.NewRequest("GET", path, nil)
		r.Host = "127.0.0.1:9000"
		return r
	}
	var f ecosystem.File
	call(t, browser, req("/api/ecosystem"), &f)
	if f.Revealed || f.Apps[0].Env["API_TOKEN"] != ecosystem.Mask {
		t.Errorf("admin port: %+v", f)
	}
	var e Error
	if rec := call(t, browser, req("/api/ecosystem?reveal=1"), &e); rec.Code != 403 || !strings.Contains(e.Error, "control socket only") {
		t.Errorf("reveal on the admin port: %d %+v", rec.Code, e)
	}
	call(t, a.Control(), req("/api/ecosystem?reveal=1"), &f)
	if !f.Revealed || f.Apps[0].Env["API_TOKEN"] != "tok-1234567" {
		t.Errorf("control socket: %+v", f)
	}
}

func TestPushIsServedOnTheControlSocketOnly(t *testing.T) {
	a, _ := newTestAPI(t)
	browser, err := a.Browser(Hosts{})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"branch": "main", "old": "` + strings.Repeat("0", 40) + `", "commit": "` + strings.Repeat("1", 40) + `"}`
	req := func() *http.Request {
		r := httptest.NewRequest("POST", "/api/slots/a/push", strings.NewReader(body))
		r.Host = "127.0.0.1:9000"
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		return r
	}
	var e Error
	if rec := call(t, browser, req(), &e); rec.Code != 403 || !strings.Contains(e.Error, "control socket only") {
		t.Fatalf("push on the admin port: %d %+v", rec.Code, e)
	}
	// Over the control socket it reaches the agent (the fake has no git).
	if rec := call(t, a.Control(), req(), &e); rec.Code == 403 || !strings.Contains(e.Details+e.Error, "no git in this test") {
		t.Fatalf("push on the control socket: %d %+v", rec.Code, e)
	}
}

func TestPathsWithDotPartsAreRefusedNotRedirected(t *testing.T) {
	a, _ := newTestAPI(t)
	browser, err := a.Browser(Hosts{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/api/slots/a/../b/git-remote", "/api/slots/a/./env", "/api/slots//a/env", "/api/slots/a/..", "/static/../api/slots"} {
		for name, h := range map[string]http.Handler{"control socket": a.Control(), "admin port": browser} {
			r := httptest.NewRequest("GET", p, nil)
			r.Host = "127.0.0.1:9000"
			var e Error
			if rec := call(t, h, r, &e); rec.Code != 400 || e.Error != "invalid path" || rec.Header().Get("Location") != "" {
				t.Errorf("%s %s: %d %+v Location %q", name, p, rec.Code, e, rec.Header().Get("Location"))
			}
		}
	}
	// Clean paths, with or without a trailing slash, are served.
	for _, p := range []string{"/", "/api/slots", "/api/slots/b/env", "/static/"} {
		if rec := call(t, a.Control(), httptest.NewRequest("GET", p, nil), nil); rec.Code == 400 {
			t.Errorf("%s: %d %s", p, rec.Code, rec.Body)
		}
	}
}
