package main

// End-to-end tests of the workspace PostgreSQL: the agent runs the real
// server from Debian's packages, a deployed app uses its database.

import (
	"context"
	binenc "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/postgres"
	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/state"
)

// dbApp writes and reads rows through psql: /write/X with DATABASE_URL
// alone, /whoami with the PG* variables alone.
const dbApp = `const http = require('http');
const { execFileSync } = require('child_process');
function psql(sql, useURL) {
  const env = Object.assign({}, process.env);
  const args = ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql];
  if (useURL) {
    for (const k of ['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD']) delete env[k];
    args.unshift('-d', process.env.DATABASE_URL);
  }
  return execFileSync(process.env.PSQL, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}
http.createServer((req, res) => {
  try {
    if (req.url === '/health') { res.end('ok'); return; }
    if (req.url.startsWith('/write/')) {
      psql("CREATE TABLE IF NOT EXISTS notes (body text); INSERT INTO notes VALUES ('" + req.url.slice(7).replace(/\W/g, '') + "')", true);
      res.end('written'); return;
    }
    if (req.url === '/read') { res.end(psql("SELECT string_agg(body, ',' ORDER BY body) FROM notes", true)); return; }
    if (req.url === '/whoami') { res.end(psql("SELECT current_user || '@' || current_database()", false)); return; }
    res.end('db app');
  } catch (e) { res.statusCode = 500; res.end(String(e.stderr || e)); }
}).listen(Number(process.env.PORT), '127.0.0.1');
`

// needPostgres skips the test when PostgreSQL is not installed.
func needPostgres(t *testing.T) postgres.Binaries {
	t.Helper()
	testkit.NeedPostgres(t)
	b, err := postgres.FindBinaries(context.Background(), "")
	if err != nil {
		t.Fatalf("PostgreSQL is installed but not found: %v", err)
	}
	return b
}

// pgAgent is an agent with PostgreSQL on, on a free port, in a data dir
// the postgres user can get to when the tests run as root (t.TempDir's
// parent is 0700).
func pgAgent(t *testing.T) *agent {
	t.Helper()
	base, err := os.MkdirTemp("", "pg-e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) }) // after the agent's stop, registered next
	if err := os.Chmod(base, 0o711); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t)
	a.dataDir = filepath.Join(base, "data")
	a.ports["postgres"] = testkit.FreePort(t)
	a.env = append(a.env, "SLOTAGENT_DATA_DIR="+a.dataDir, "SLOTAGENT_POSTGRES_ENABLED=true",
		"SLOTAGENT_POSTGRES_PORT="+strconv.Itoa(a.ports["postgres"]))
	return a
}

// startSlow starts the agent and waits for it longer than start does (a
// first boot makes the cluster before the agent answers), failing at once
// with the agent's log when it exits instead.
func (a *agent) startSlow(extraEnv ...string) time.Duration {
	a.t.Helper()
	a.launch(exec.Command(binary, "run"), extraEnv...)
	start := time.Now()
	for time.Since(start) < 60*time.Second {
		select {
		case <-a.child.Done():
			a.t.Fatalf("the agent exited (%s) before answering:\n%s", a.child.Exit(), a.stderr())
		default:
		}
		if _, err := testkit.WaitHTTPErr(a.url("admin", "/healthz"), 200, time.Second); err == nil {
			return time.Since(start)
		}
	}
	a.t.Fatalf("the agent did not answer within 60s:\n%s", a.stderr())
	return 0
}

// getUntil GETs url until it answers 200 with body want.
func getUntil(t *testing.T, url, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, b := body(t, url)
		if code == 200 && b == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %q, want %q", url, code, b, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitPostgres waits until GET /api/db says state, and returns it.
func (a *agent) waitPostgres(state string, timeout time.Duration) postgres.Status {
	a.t.Helper()
	var st postgres.Status
	for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		a.apiJSON("/api/db", &st)
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("PostgreSQL is %s, not %s, after %s: %+v\n%s", st.State, state, timeout, st, a.stderr())
		}
	}
}

func (a *agent) pgProcess() admin.ProcessRow {
	a.t.Helper()
	for _, p := range a.processes().Processes {
		if p.Name == postgres.ProcessName {
			return p
		}
	}
	a.t.Fatal("no postgres process")
	return admin.ProcessRow{}
}

func TestPostgresDatabasesPerSlotThroughRestarts(t *testing.T) {
	bins := needPostgres(t)
	testkit.NeedNode(t)
	a := pgAgent(t)
	took := a.startSlow(fastDeploys...)
	t.Logf("first boot with initdb: the agent answered after %s", took)
	a.waitPostgres(postgres.StateOnline, 60*time.Second)

	out := a.mustCLI("status")
	if !strings.Contains(out, "postgres: online on 127.0.0.1:"+strconv.Itoa(a.ports["postgres"])+", 6 of 6 databases up") {
		t.Fatalf("status:\n%s", out)
	}
	if out = a.mustCLI("validate"); !strings.Contains(out, "ok    PostgreSQL on") || !strings.Contains(out, "ok    process postgres online") {
		t.Fatalf("validate:\n%s", out)
	}
	urlA := strings.TrimSpace(a.mustCLI("db", "a", "url"))
	pwA := strings.TrimPrefix(strings.Split(urlA, "@")[0], "postgresql://slot_a:")
	if len(pwA) < 20 {
		t.Fatalf("db a url: %q", urlA)
	}

	appDir := testkit.WriteApp(t, dbApp)
	a.mustCLI("deploy", "a", "--dir", appDir, "--start", "node server.js", "--env", "PSQL="+bins.Psql, "--wait")
	getUntil(t, a.url("a", "/write/hello"), "written", 5*time.Second)
	getUntil(t, a.url("a", "/read"), "hello", 5*time.Second)
	getUntil(t, a.url("a", "/whoami"), "slot_a@slot_a", 5*time.Second)

	// Slot a's credentials are refused by slot b's database.
	cmd := exec.Command(bins.Psql, "-X", "-c", "SELECT 1", "-d", strings.TrimSuffix(urlA, "/slot_a")+"/slot_b")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if out, err := reaper.Output(context.Background(), cmd); err == nil || !strings.Contains(err.Error(), `permission denied for database "slot_b"`) {
		t.Fatalf("slot a's role in slot b's database: %s %v", out, err)
	}
	checkDatabaseAPI(t, a, pwA)

	resetSlotA(t, a)
	killPostgres(t, a)

	// A restart of the agent brings back the same cluster and the data.
	a.signal(syscall.SIGTERM)
	a.wait(15 * time.Second)
	if code := a.exitCode(); code != 0 {
		t.Fatalf("agent exit %d\n%s", code, a.stderr())
	}
	if _, err := os.Stat(filepath.Join(postgres.Dir(a.dataDir), "data", "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid after the agent's stop (no clean shutdown?): %v", err)
	}
	first := a.stderr()
	took = a.startSlow(fastDeploys...)
	t.Logf("rehydrate with PostgreSQL: the agent answered after %s", took)
	getUntil(t, a.url("a", "/read"), "again", 10*time.Second)
	if strings.Contains(strings.TrimPrefix(a.stderr(), first), "first boot of PostgreSQL") || !strings.Contains(first, "first boot of PostgreSQL") {
		t.Errorf("the cluster must be made on the first boot only:\n%s\n---\n%s", first, a.stderr())
	}
	checkNoPasswordInLogs(t, a, pwA)
}

// checkDatabaseAPI: the panel's answers show the databases, never a password.
func checkDatabaseAPI(t *testing.T, a *agent, password string) {
	t.Helper()
	var st postgres.Status
	a.apiJSON("/api/db", &st)
	if st.State != postgres.StateOnline || len(st.Databases) != 6 {
		t.Fatalf("/api/db: %+v", st)
	}
	var one admin.SlotDatabase
	a.apiJSON("/api/slots/a/db", &one)
	if one.Status != "online" || one.Database == nil || !one.Database.Up || one.Database.Size == 0 ||
		one.Database.URL != "postgresql://slot_a:********@127.0.0.1:"+strconv.Itoa(a.ports["postgres"])+"/slot_a" {
		t.Fatalf("/api/slots/a/db: %+v %+v", one, one.Database)
	}
	for _, path := range []string{"/api/db", "/api/slots/a/db", "/api/config", "/api/slots", "/api/processes", "/api/slots/a/env"} {
		if _, b := body(t, a.url("admin", path)); strings.Contains(b, password) {
			t.Errorf("%s shows slot a's database password", path)
		}
	}
	var cfg admin.ProcessConfig
	a.apiJSON("/api/config", &cfg)
	for _, p := range cfg.Processes {
		if strings.HasPrefix(p.Name, "slot-a@") && p.ShownEnv["DATABASE_URL"] != "********" {
			t.Errorf("slot a's shown env: %v", p.ShownEnv)
		}
	}
}

// resetSlotA: a reset wants --yes, then empties the database and restarts the app.
func resetSlotA(t *testing.T, a *agent) {
	t.Helper()
	if _, errOut, code := a.cli("db", "a", "reset"); code == 0 || !strings.Contains(errOut, "--yes") {
		t.Fatalf("reset without --yes: %d %s", code, errOut)
	}
	if out := a.mustCLI("db", "a", "reset", "--yes"); !strings.Contains(out, "database slot_a of slot a is empty again; its app was restarted") {
		t.Fatalf("reset: %s", out)
	}
	testkit.WaitHTTP(t, a.url("a", "/health"), 200, 10*time.Second)
	if code, b := body(t, a.url("a", "/read")); code != 500 || !strings.Contains(b, `relation "notes" does not exist`) {
		t.Fatalf("read after reset: %d %q", code, b)
	}
	getUntil(t, a.url("a", "/write/again"), "written", 5*time.Second)
}

// killPostgres: kill -9 of the server; the supervisor starts it again and
// the app answers again.
func killPostgres(t *testing.T, a *agent) {
	t.Helper()
	old := a.pgProcess()
	if old.Status != "online" || old.PID == 0 {
		t.Fatalf("postgres row: %+v", old)
	}
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	getUntil(t, a.url("a", "/read"), "again", 20*time.Second)
	t.Logf("kill -9 of postgres: the app read its rows again after %s", time.Since(start))
	if p := a.pgProcess(); p.PID == old.PID || p.Restarts == 0 {
		t.Errorf("postgres after kill -9: %+v", p)
	}
}

// checkNoPasswordInLogs: the password is in no log of the agent.
func checkNoPasswordInLogs(t *testing.T, a *agent, password string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(a.dataDir, "logs", "*"))
	for _, f := range append(files, a.logFile) {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), password) {
			t.Errorf("%s holds slot a's database password", f)
		}
	}
}

func TestPostgresLeavesForeignOrDamagedDataDirsAlone(t *testing.T) {
	bins := needPostgres(t)
	control := make([]byte, 8192)
	binenc.NativeEndian.PutUint64(control, 7381)
	for name, tt := range map[string]struct {
		files map[string]string
		want  string
	}{
		"junk":    {map[string]string{"notes.txt": "my notes"}, "is not empty and holds no PostgreSQL cluster (no PG_VERSION)"},
		"foreign": {map[string]string{"PG_VERSION": strconv.Itoa(bins.Major) + "\n", "global/pg_control": string(control)}, "holds a PostgreSQL cluster that slotagent did not create"},
		"damaged": {map[string]string{"PG_VERSION": strconv.Itoa(bins.Major) + "\n", "global/pg_control": "truncated"}, "is damaged: global/pg_control has 9 bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			a := pgAgent(t)
			pgdata := filepath.Join(postgres.Dir(a.dataDir), "data")
			for f, content := range tt.files {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(pgdata, f)), 0o700); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(pgdata, f), content)
			}
			a.startSlow()
			a.waitPostgres(postgres.StateError, 20*time.Second)
			out := a.mustCLI("status")
			if !strings.Contains(out, "postgres: error (PostgreSQL: "+pgdata+" "+tt.want) || !strings.Contains(out, "slotagent leaves it as it is") ||
				strings.Contains(out, "postgres  ") {
				t.Errorf("status:\n%s", out)
			}
			if out, _, code := a.cli("validate"); code == 0 || !strings.Contains(out, "FAIL  no problems at start: PostgreSQL: ") {
				t.Errorf("validate: %d\n%s", code, out)
			}
			for f, content := range tt.files {
				if b, err := os.ReadFile(filepath.Join(pgdata, f)); err != nil || string(b) != content {
					t.Errorf("%s was changed: %v", f, err)
				}
			}
			code, b := body(t, a.url("a", "/"))
			if code != 200 || !strings.Contains(b, "Slot a") {
				t.Errorf("slot a: %d", code)
			}
		})
	}
}

func TestAgentWithoutPostgres(t *testing.T) {
	a := newAgent(t)
	empty := t.TempDir()
	a.start("SLOTAGENT_POSTGRES_ENABLED=auto", "SLOTAGENT_POSTGRES_BIN_DIR="+empty)
	out := a.mustCLI("status")
	if !strings.Contains(out, "postgres: off (no PostgreSQL server binaries (postgres, initdb) in "+empty+": apps get no DATABASE_URL") ||
		!strings.Contains(out, "6 of 6 online") {
		t.Fatalf("status:\n%s", out)
	}
	if out := a.mustCLI("validate"); !strings.Contains(out, "all 16 checks passed") {
		t.Fatalf("validate:\n%s", out)
	}
	if _, errOut, code := a.cli("db", "a", "url"); code == 0 || !strings.Contains(errOut, "the agent has not set PostgreSQL up") {
		t.Fatalf("db a url: %d %s", code, errOut)
	}
	if _, errOut, code := a.cli("db", "b", "reset", "--yes"); code == 0 || !strings.Contains(errOut, "no PostgreSQL server binaries") {
		t.Fatalf("db b reset: %d %s", code, errOut)
	}
	var one admin.SlotDatabase
	a.apiJSON("/api/slots/a/db", &one)
	if one.Status != "off" || one.Database != nil {
		t.Fatalf("/api/slots/a/db: %+v", one)
	}
	raw, _ := json.Marshal(one)
	t.Logf("GET /api/slots/a/db without PostgreSQL: %s", raw)
}

// fakePostgres is a bin dir whose postgres, initdb and psql run script.
func fakePostgres(t *testing.T, script string) string {
	t.Helper()
	dir := t.TempDir()
	for _, prog := range []string{"postgres", "initdb", "psql"} {
		writeFile(t, filepath.Join(dir, prog), "#!/bin/sh\n"+script+"\n")
		if err := os.Chmod(filepath.Join(dir, prog), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// twoApps gives slot a the hello app with a DATABASE_URL of its own and
// slot b the hello app using the workspace database.
func twoApps(t *testing.T, dataDir string) {
	t.Helper()
	testkit.NeedNode(t)
	st := state.New()
	for name, env := range map[string]map[string]string{"a": {"DATABASE_URL": "postgresql://u:p@db.invalid/x"}, "b": nil} {
		st.Slots[name] = &state.Slot{
			Desired: state.DesiredRunning, Current: "r1", Env: env,
			Releases: []state.Release{{ID: "r1", Dir: testkit.WriteApp(t, testkit.HelloApp), Command: "node server.js", CreatedAt: time.Now().UTC()}},
		}
	}
	if err := state.Save(filepath.Join(dataDir, "state.json"), st); err != nil {
		t.Fatal(err)
	}
}

// slotError is the error a slot's row shows.
func (a *agent) slotError(name string) string {
	a.t.Helper()
	for _, p := range a.processes().Processes {
		if p.Slot == name {
			return p.Error
		}
	}
	a.t.Fatalf("no row of slot %s", name)
	return ""
}

// TestHangingPostgresHoldsNothingUp: a PostgreSQL that never answers
// holds up no port, not the panel, not the Coder agent, not an app that
// does not use it, and not the agent's stop.
func TestHangingPostgresHoldsNothingUp(t *testing.T) {
	a := newAgent(t)
	twoApps(t, a.dataDir)
	marker := filepath.Join(t.TempDir(), "coder-agent")
	began := time.Now()
	a.launch(exec.Command(binary, "run"), "SLOTAGENT_POSTGRES_ENABLED=true", "SLOTAGENT_POSTGRES_BIN_DIR="+fakePostgres(t, "exec sleep 600"),
		"SLOTAGENT_POSTGRES_PORT="+strconv.Itoa(testkit.FreePort(t)), "SLOTAGENT_ROLE=entrypoint", "CODER_AGENT_INIT_SCRIPT=touch "+marker+"; exec sleep 600")
	// Before the fix the start waited for `postgres --version` (10 s) first.
	testkit.WaitHTTP(t, a.url("admin", "/healthz"), 200, 5*time.Second)
	for _, s := range []string{"c", "d", "e"} {
		testkit.WaitHTTP(t, a.url(s, "/health"), 200, time.Second)
	}
	t.Logf("the panel and the placeholders answered after %s", time.Since(began))

	// PostgreSQL is starting (its `postgres --version` hangs; the set-up
	// gives up after 10 s). Slot b's app waits for its database: the slot
	// says so and is reserved.
	if out := a.mustCLI("status"); !strings.Contains(out, "postgres: starting (checking the binaries and the data dir)") {
		t.Errorf("status:\n%s", out)
	}
	a.waitPostgres(postgres.StateStarting, time.Second)
	if msg := a.slotError("b"); msg != "release r1 starts once PostgreSQL is ready" {
		t.Errorf("slot b shows %q", msg)
	}
	if code, b := body(t, a.url("b", "/")); code != 503 || !strings.Contains(b, "starts once PostgreSQL is ready") {
		t.Errorf("slot b: %d %s", code, b)
	}
	if _, errOut, code := a.cli("stop", "b"); code == 0 || !strings.Contains(errOut, "rehydrate of r1") {
		t.Errorf("stop b while it waits: %d %s", code, errOut)
	}

	// The app that does not use the workspace database and the Coder
	// agent do not wait.
	getUntil(t, a.url("a", "/"), "hello from a v1", 8*time.Second)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Coder agent did not start")
		}
	}
	t.Logf("the app without the workspace database answered after %s", time.Since(began))

	a.signal(syscall.SIGTERM)
	if d := a.wait(10 * time.Second); d > 5*time.Second {
		t.Errorf("stop took %s", d)
	}
	if code := a.exitCode(); code != 0 {
		t.Fatalf("exit %d\n%s", code, a.stderr())
	}
}

// TestFailedPostgresStartsWaitingAppsAnyway: when PostgreSQL cannot be
// started, the apps that wait for it start and their slots say why.
func TestFailedPostgresStartsWaitingAppsAnyway(t *testing.T) {
	a := newAgent(t)
	twoApps(t, a.dataDir)
	a.start("SLOTAGENT_POSTGRES_ENABLED=true", "SLOTAGENT_POSTGRES_BIN_DIR="+fakePostgres(t, "echo not a postgres"),
		"SLOTAGENT_POSTGRES_PORT="+strconv.Itoa(testkit.FreePort(t)))
	getUntil(t, a.url("b", "/"), "hello from b v1", 10*time.Second)
	if msg := a.slotError("b"); !strings.Contains(msg, "release r1 started although what it needs is not ready: PostgreSQL could not be started: ") ||
		!strings.Contains(msg, "unexpected answer") {
		t.Errorf("slot b shows %q", msg)
	}
	if msg := a.slotError("a"); msg != "" {
		t.Errorf("slot a shows %q", msg)
	}
	st := a.waitPostgres(postgres.StateError, time.Second)
	if st.Port == 0 || st.Host != postgres.Host {
		t.Errorf("status without its address: %+v", st)
	}
	if out, _, code := a.cli("validate"); code == 0 || !strings.Contains(out, fmt.Sprintf("FAIL  PostgreSQL on 127.0.0.1:%d", st.Port)) {
		t.Errorf("validate: %d\n%s", code, out)
	}
}

// TestValidateNamesTheConfiguredPostgresAddress: a PostgreSQL that cannot
// run is reported at the address it was configured on, not ":0".
func TestValidateNamesTheConfiguredPostgresAddress(t *testing.T) {
	a := newAgent(t)
	port := testkit.FreePort(t)
	a.start("SLOTAGENT_POSTGRES_ENABLED=true", "SLOTAGENT_POSTGRES_BIN_DIR="+t.TempDir(), "SLOTAGENT_POSTGRES_PORT="+strconv.Itoa(port))
	out, _, code := a.cli("validate")
	if code == 0 || !strings.Contains(out, fmt.Sprintf("FAIL  PostgreSQL on 127.0.0.1:%d online with every database: error: no PostgreSQL server binaries", port)) {
		t.Errorf("validate: %d\n%s", code, out)
	}
}

// TestPostgresOnlineMeansUsable: from the moment the process list says
// postgres is online (on a first boot, initdb and all), a slot's database
// takes its URL; before that the row says what the set-up is doing.
func TestPostgresOnlineMeansUsable(t *testing.T) {
	bins := needPostgres(t)
	a := pgAgent(t)
	a.startSlow()
	steps := map[string]bool{}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var list admin.ProcessList
		a.apiJSON("/api/processes", &list)
		var row admin.ProcessRow
		for _, p := range list.Processes {
			if p.Name == postgres.ProcessName {
				row = p
			}
		}
		if row.Status == "online" {
			break
		}
		steps[row.Status+" ("+row.Error+")"] = true
		if time.Now().After(deadline) {
			t.Fatalf("postgres never online: %+v\n%s", row, a.stderr())
		}
	}
	url := strings.TrimSpace(a.mustCLI("db", "a", "url"))
	cmd := exec.Command(bins.Psql, "-X", "-A", "-t", "-c", "SELECT current_user", "-d", url)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := reaper.Output(context.Background(), cmd)
	if err != nil || strings.TrimSpace(string(out)) != "slot_a" {
		t.Fatalf("psql right when postgres is online: %q %v (seen before: %v)", out, err, steps)
	}
	t.Logf("statuses before online: %v", steps)
}

// TestAwaitedAppNeverLooksEmpty: after a kill -9, the new agent brings
// back slot a's app, which waits for PostgreSQL; from the slot's first
// answer until the app's, the slot answers 503 with Retry-After and a
// "starting" page: never the empty slot's placeholder, never a 200 its
// app did not send.
func TestAwaitedAppNeverLooksEmpty(t *testing.T) {
	bins := needPostgres(t)
	testkit.NeedNode(t)
	a := pgAgent(t)
	if err := os.MkdirAll(a.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st := state.New()
	st.Slots["a"] = &state.Slot{Desired: state.DesiredRunning, Current: "r1", Releases: []state.Release{{ID: "r1",
		Dir: testkit.WriteApp(t, testkit.DBHealthApp), Command: "node server.js", Env: map[string]string{"PSQL": bins.Psql},
		CreatedAt: time.Now().UTC()}}}
	if err := state.Save(filepath.Join(a.dataDir, "state.json"), st); err != nil {
		t.Fatal(err)
	}
	a.startSlow()
	getUntil(t, a.url("a", "/"), "db app", 60*time.Second)
	a.signal(syscall.SIGKILL)
	a.wait(5 * time.Second)

	a.launch(exec.Command(binary, "run"))
	client := &http.Client{Timeout: 5 * time.Second}
	seen := map[string]int{}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("slot a never served its app; answers seen: %v\n%s", seen, a.stderr())
		}
		resp, err := client.Get(a.url("a", "/"))
		if err != nil {
			continue // not listening yet
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && string(b) == "db app" {
			break
		}
		title := string(b)
		if i, j := strings.Index(title, "<title>"), strings.Index(title, "</title>"); i >= 0 && j > i {
			title = title[i+7 : j]
		}
		seen[fmt.Sprintf("%d %s", resp.StatusCode, title)]++
		// "starting" while it waits for PostgreSQL, "launching" once its
		// process is spawned and not answering yet.
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(string(b), "the app is starting") && !strings.Contains(string(b), "the app is launching") {
			t.Fatalf("while its app starts, slot a answered %d (Retry-After %q):\n%s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
	}
	// The app starts once PostgreSQL (killed with the old agent) is up
	// again: the slot answered before it.
	if len(seen) == 0 {
		t.Fatal("the slot's first answer was the app's: the wait for PostgreSQL was not seen")
	}
	t.Logf("answers before the app's: %v", seen)
}

// TestValidateWaitsForWhatIsStarting: right after a first boot, PostgreSQL
// is still being set up; validate --wait waits for it and passes.
func TestValidateWaitsForWhatIsStarting(t *testing.T) {
	needPostgres(t)
	a := pgAgent(t)
	a.startSlow()
	var st postgres.Status
	a.apiJSON("/api/db", &st)
	if st.State != postgres.StateStarting {
		t.Fatalf("PostgreSQL is %s right after a first boot: the test shows nothing", st.State)
	}
	out, errOut, code := a.cli("validate", "--wait", "90s")
	if code != 0 || !strings.Contains(out, "ok    PostgreSQL on") || !strings.Contains(out, "checks passed") {
		t.Fatalf("validate --wait: exit %d\n%s%s", code, out, errOut)
	}
}

// TestValidateWaitEndsWithAClearLine: what is still starting when the wait
// ends is named as such, and a failure that is not starting ends the wait
// at once.
func TestValidateWaitEndsWithAClearLine(t *testing.T) {
	a := newAgent(t)
	port := testkit.FreePort(t)
	// postgres --version hangs: the set-up stays at its first step for 10 s.
	a.start("SLOTAGENT_POSTGRES_ENABLED=true", "SLOTAGENT_POSTGRES_BIN_DIR="+fakePostgres(t, "exec sleep 600"),
		"SLOTAGENT_POSTGRES_PORT="+strconv.Itoa(port))
	began := time.Now()
	out, errOut, code := a.cli("validate", "--wait", "2s")
	took := time.Since(began)
	want := fmt.Sprintf("FAIL  PostgreSQL on 127.0.0.1:%d online with every database: still starting: starting: checking the binaries and the data dir\n", port)
	if code == 0 || !strings.Contains(out, want) || !strings.Contains(errOut, "checks failed, 1 of them still starting after 2s") {
		t.Errorf("validate --wait 2s: exit %d\n%s%s", code, out, errOut)
	}
	if took < 2*time.Second || took > 8*time.Second {
		t.Errorf("validate --wait 2s took %s", took)
	}

	b := newAgent(t)
	b.start("SLOTAGENT_POSTGRES_ENABLED=true", "SLOTAGENT_POSTGRES_BIN_DIR="+fakePostgres(t, "echo not a postgres"),
		"SLOTAGENT_POSTGRES_PORT="+strconv.Itoa(testkit.FreePort(t)))
	began = time.Now()
	out, errOut, code = b.cli("validate", "--wait", "60s")
	if took := time.Since(began); code == 0 || took > 20*time.Second || !strings.Contains(out, "online with every database: error: PostgreSQL: ") || !strings.Contains(out, "unexpected answer") ||
		strings.Contains(errOut, "still starting") {
		t.Errorf("validate --wait 60s with a PostgreSQL that cannot start: exit %d after %s\n%s%s", code, took, out, errOut)
	}
	if _, errOut, code := b.cli("validate", "--wait", "-1s"); code == 0 || !strings.Contains(errOut, "--wait must not be negative") {
		t.Errorf("validate --wait -1s: exit %d %s", code, errOut)
	}
}
