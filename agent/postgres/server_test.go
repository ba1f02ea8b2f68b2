package postgres

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/logs"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// searchableDir is a temporary directory that the postgres user can get
// through when the tests run as root (t.TempDir's parent is 0700).
func searchableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgtest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testServer is one run of the server over a data dir.
type testServer struct {
	*Server
	sup *supervisor.Supervisor
	log *os.File // the agent's log
}

// runServer prepares and runs the server, waiting at most timeout.
func runServer(t *testing.T, dataDir string, port int, timeout time.Duration) (*testServer, error) {
	t.Helper()
	log, err := os.CreateTemp(t.TempDir(), "agent-log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	ts := &testServer{log: log, sup: supervisor.New(filepath.Join(dataDir, "logs"), logs.Options{}, 0)}
	opt := Options{Settings: config.Postgres{Enabled: config.PostgresOn, Port: port}, Dir: Dir(dataDir), Slots: []string{"a", "b"}}
	ts.Server = New(opt, slog.New(slog.NewTextHandler(ts.log, nil)))
	if p := ts.Problem(); p != "" {
		t.Fatal(p)
	}
	ts.Start(ts.sup)
	return ts, ts.WaitReady(context.Background(), timeout)
}

// logged is what the server's owner logged.
func (ts *testServer) logged() string {
	b, _ := os.ReadFile(ts.log.Name())
	return string(b)
}

// stop stops the server the way the agent does at shutdown.
func (ts *testServer) stop() {
	ts.Close()
	ts.sup.Close(5 * time.Second)
}

func (ts *testServer) sql(t *testing.T, slot, sql string) string {
	t.Helper()
	out, err := connect(t, ts.bins, ts.SlotEnv(slot), sql)
	if err != nil {
		t.Fatalf("slot %s: %s: %v", slot, sql, err)
	}
	return out
}

func TestServerLifecycle(t *testing.T) {
	needBinaries(t)
	dataDir := filepath.Join(searchableDir(t), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t)
	start := time.Now()
	ts, err := runServer(t, dataDir, port, 30*time.Second)
	if err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, ts.logged())
	}
	t.Logf("first boot (initdb, start, databases) took %s", time.Since(start))
	if !strings.Contains(ts.logged(), "first boot of PostgreSQL") {
		t.Errorf("log:\n%s", ts.logged())
	}
	st := ts.Status(context.Background())
	if st.State != StateOnline || len(st.Databases) != 3 || st.Port != port {
		t.Fatalf("status %+v", st)
	}
	for _, db := range st.Databases {
		if !db.Up || db.Size == 0 || !strings.Contains(db.URL, ":********@") {
			t.Errorf("database %+v", db)
		}
	}

	ts.sql(t, "a", "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('from a')")
	ts.sql(t, "b", "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('from b')")
	crossed := ts.SlotEnv("a")
	crossed["PGDATABASE"] = "slot_b"
	if out, err := connect(t, ts.bins, crossed, "SELECT * FROM notes"); err == nil || !strings.Contains(err.Error(), "permission denied for database") {
		t.Errorf("slot a's role in slot b's database: %q, %v", out, err)
	}
	for _, db := range []string{"postgres", "template1"} {
		crossed["PGDATABASE"] = db
		if _, err := connect(t, ts.bins, crossed, "SELECT 1"); err == nil {
			t.Errorf("slot a's role connects to %s", db)
		}
	}
	checkWorkspaceURL(t, ts, dataDir)

	if err := ts.Reset(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if out, err := connect(t, ts.bins, ts.SlotEnv("a"), "SELECT * FROM notes"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("after reset: %q, %v", out, err)
	}

	killAndRecover(t, ts)
	ts.stop()
	if _, err := os.Stat(filepath.Join(ts.dataDir(), "postmaster.pid")); !os.IsNotExist(err) {
		t.Errorf("postmaster.pid after the stop: %v (not a clean shutdown?)", err)
	}
	checkNoSecretsLogged(t, dataDir, ts)

	// The next agent starts the same cluster, never a new one. It does not
	// wait for it here: the set-up goes on in the background.
	ts, err = runServer(t, dataDir, port, time.Nanosecond)
	defer ts.stop()
	if err == nil || !strings.Contains(err.Error(), "did not take connections within 1ns") {
		t.Errorf("WaitReady with no time to wait: %v", err)
	}
	for deadline := time.Now().Add(20 * time.Second); ts.Status(context.Background()).State != StateOnline; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not online: %+v\n%s", ts.Status(context.Background()), ts.logged())
		}
	}
	if strings.Contains(ts.logged(), "first boot") {
		t.Errorf("second start made a new cluster:\n%s", ts.logged())
	}
	if got := ts.sql(t, "b", "SELECT body FROM notes"); got != "from b" {
		t.Errorf("slot b's rows after a restart: %q", got)
	}
}

// checkWorkspaceURL: the workspace user's URL file is private and works.
func checkWorkspaceURL(t *testing.T, ts *testServer, dataDir string) {
	t.Helper()
	path := filepath.Join(Dir(dataDir), "workspace_db.url")
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("workspace_db.url: %v %v", st, err)
	}
	b, _ := os.ReadFile(path)
	want, err := URL(Dir(dataDir), "workspace")
	if err != nil || strings.TrimSpace(string(b)) != want {
		t.Fatalf("workspace URL %q, file %q, %v", want, b, err)
	}
	env := ts.creds.Env(WorkspaceRole, WorkspaceDatabase)
	if out, err := connect(t, ts.bins, env, "SELECT current_database()"); err != nil || out != WorkspaceDatabase {
		t.Errorf("workspace database: %q, %v", out, err)
	}
}

// killAndRecover kills the server with SIGKILL: the supervisor starts it
// again and clients connect again.
func killAndRecover(t *testing.T, ts *testServer) {
	t.Helper()
	old := ts.proc.Info().PID
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := connect(t, ts.bins, ts.SlotEnv("b"), "SELECT count(*) FROM notes")
		info := ts.proc.Info()
		if err == nil && info.PID != old && info.Status == supervisor.Online {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not back after kill -9: %+v, %v", info, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkNoSecretsLogged: no password is in the server's logs or the agent's.
func checkNoSecretsLogged(t *testing.T, dataDir string, ts *testServer) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dataDir, "logs", "*"))
	texts := []string{ts.logged()}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		texts = append(texts, string(b))
	}
	for role, pw := range ts.creds.Passwords {
		for _, text := range texts {
			if strings.Contains(text, pw) {
				t.Errorf("the password of %s is in a log", role)
			}
		}
	}
}

// TestHangingServerStaysInTheBackground: a postgres that never answers
// keeps the server "starting" without holding up New, Start or Close.
func TestHangingServerStaysInTheBackground(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("no psql: ", err)
	}
	bin := t.TempDir()
	for _, prog := range []string{"postgres", "initdb"} {
		if err := os.WriteFile(filepath.Join(bin, prog), []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := filepath.Join(searchableDir(t), "data")
	log, err := os.CreateTemp(t.TempDir(), "agent-log")
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	sup := supervisor.New(filepath.Join(dataDir, "logs"), logs.Options{}, 0)
	defer sup.Close(time.Second)
	opt := Options{Settings: config.Postgres{Enabled: config.PostgresOn, Port: testkit.FreePort(t), BinDir: bin},
		Dir: Dir(dataDir), Slots: []string{"a"}}
	begin := time.Now()
	s := New(opt, slog.New(slog.NewTextHandler(log, nil)))
	s.Start(sup)
	if d := time.Since(begin); d > time.Second {
		t.Errorf("New and Start took %s", d)
	}
	if s.Problem() != "" || s.SlotEnv("a")["DATABASE_URL"] == "" {
		t.Fatalf("problem %q, env %v", s.Problem(), s.SlotEnv("a"))
	}
	st := s.Status(context.Background())
	if st.State != StateStarting || st.Port != opt.Settings.Port || st.Host != Host {
		t.Errorf("status %+v", st)
	}
	if err := s.WaitReady(context.Background(), 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "within 100ms") {
		t.Errorf("WaitReady: %v", err)
	}
	begin = time.Now()
	s.Close()
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Close took %s", d)
	}
	if err := s.WaitReady(context.Background(), time.Second); err == nil || !strings.Contains(err.Error(), "could not be started") {
		t.Errorf("WaitReady after Close: %v", err)
	}
}
