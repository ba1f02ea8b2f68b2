package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/reaper"
)

func TestMain(m *testing.M) {
	if err := reaper.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestQuoting(t *testing.T) {
	for in, want := range map[string]string{`slot_a`: `"slot_a"`, `we"ird`: `"we""ird"`} {
		if got := quoteIdent(in); got != want {
			t.Errorf("quoteIdent(%q) = %s, want %s", in, got, want)
		}
	}
	for in, want := range map[string]string{`abc`: `'abc'`, `it's`: `'it''s'`, `a\'b`: `E'a\\''b'`} {
		if got := quoteLiteral(in); got != want {
			t.Errorf("quoteLiteral(%q) = %s, want %s", in, got, want)
		}
	}
	sql := ensureSQL(database{role: "slot_a", name: "slot_a"}, "SCRAM-SHA-256$4096:x$y:z")
	for _, want := range []string{
		`SELECT 'CREATE ROLE "slot_a"' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'slot_a') \gexec`,
		`PASSWORD 'SCRAM-SHA-256$4096:x$y:z';`,
		`SELECT 'CREATE DATABASE "slot_a" OWNER "slot_a"' WHERE NOT EXISTS`,
		`REVOKE ALL ON DATABASE "slot_a" FROM PUBLIC;`,
	} {
		if !strings.Contains(sql, want) {
			t.Errorf("ensureSQL lacks %s:\n%s", want, sql)
		}
	}
}

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	c, err := loadCredentials(dir)
	if err != nil || len(c.Passwords) != 0 {
		t.Fatalf("missing file: %+v %v", c, err)
	}
	if !c.ensure(Superuser, "slot_a") || c.ensure("slot_a") {
		t.Error("ensure should add passwords once")
	}
	if pw := c.Passwords["slot_a"]; len(pw) < 20 || pw == c.Passwords[Superuser] {
		t.Errorf("passwords %v", c.Passwords)
	}
	c.Port = 5544
	if err := c.save(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, credentialsFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", st, err)
	}
	again, err := loadCredentials(dir)
	if err != nil || again.Passwords["slot_a"] != c.Passwords["slot_a"] || again.Port != 5544 {
		t.Fatalf("reloaded %+v %v", again, err)
	}
	pw := c.Passwords["slot_a"]
	env := c.Env("slot_a", "slot_a")
	if env["DATABASE_URL"] != "postgresql://slot_a:"+pw+"@127.0.0.1:5544/slot_a" || env["PGPASSWORD"] != pw ||
		env["PGHOST"] != Host || env["PGPORT"] != "5544" || env["PGUSER"] != "slot_a" || env["PGDATABASE"] != "slot_a" {
		t.Errorf("env %v", env)
	}
	if u := c.URL("slot_a", "slot_a", true); strings.Contains(u, pw) || !strings.Contains(u, masked) {
		t.Errorf("masked URL %s", u)
	}
	if u, err := URL(dir, "a"); err != nil || u != env["DATABASE_URL"] {
		t.Errorf("URL(a) = %s, %v", u, err)
	}
	if _, err := URL(dir, "workspace"); err == nil {
		t.Error("URL(workspace) without its password")
	}
}

func TestScramVerifierFormat(t *testing.T) {
	v1, err := scramVerifier("secret")
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := scramVerifier("secret")
	if !strings.HasPrefix(v1, "SCRAM-SHA-256$4096:") || strings.Count(v1, "$") != 2 || v1 == v2 || strings.Contains(v1, "secret") {
		t.Errorf("verifiers %s %s", v1, v2)
	}
}

func TestFindBinaries(t *testing.T) {
	empty := t.TempDir()
	if _, err := FindBinaries(context.Background(), empty); err == nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty dir: %v", err)
	}
	b := needBinaries(t)
	if b.Major < 10 || !executable(b.Postgres()) || !executable(b.Initdb()) || b.Psql == "" {
		t.Errorf("found %+v", b)
	}
}

// needBinaries skips the test when PostgreSQL is not installed.
func needBinaries(t *testing.T) Binaries {
	t.Helper()
	testkit.NeedPostgres(t)
	b, err := FindBinaries(context.Background(), "")
	if err != nil {
		t.Fatalf("PostgreSQL is installed but not found: %v", err)
	}
	return b
}

// fakeCluster writes what inspect looks at: PG_VERSION and a pg_control
// with system identifier id.
func fakeCluster(t *testing.T, pgdata, version string, id uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(pgdata, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	control := make([]byte, controlFileSize)
	binary.NativeEndian.PutUint64(control, id)
	writeTestFile(t, filepath.Join(pgdata, "PG_VERSION"), version+"\n")
	writeTestFile(t, filepath.Join(pgdata, "global", "pg_control"), string(control))
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestInspect(t *testing.T) {
	ours := &Credentials{SystemID: "42", Passwords: map[string]string{Superuser: "pw"}}
	me := uint32(os.Geteuid())
	tests := []struct {
		name  string
		setup func(t *testing.T, pgdata string)
		creds *Credentials
		want  string // "" = ours, "fresh" = initdb
	}{
		{"missing", func(*testing.T, string) {}, ours, "fresh"},
		{"empty", func(t *testing.T, d string) { os.Mkdir(d, 0o700) }, ours, "fresh"},
		{"ours", func(t *testing.T, d string) { fakeCluster(t, d, "15", 42) }, ours, ""},
		{"junk", func(t *testing.T, d string) {
			os.Mkdir(d, 0o700)
			writeTestFile(t, filepath.Join(d, "notes.txt"), "mine")
		}, ours,
			"is not empty and holds no PostgreSQL cluster (no PG_VERSION); slotagent leaves it as it is"},
		{"other version", func(t *testing.T, d string) { fakeCluster(t, d, "11", 42) }, ours, `holds a PostgreSQL "11" cluster but the server is version 15`},
		{"damaged", func(t *testing.T, d string) {
			fakeCluster(t, d, "15", 42)
			writeTestFile(t, filepath.Join(d, "global", "pg_control"), "short")
		}, ours, "is damaged: global/pg_control has 5 bytes"},
		{"foreign", func(t *testing.T, d string) { fakeCluster(t, d, "15", 7) }, &Credentials{Passwords: map[string]string{}},
			"holds a PostgreSQL cluster that slotagent did not create"},
		{"another cluster", func(t *testing.T, d string) { fakeCluster(t, d, "15", 7) }, ours,
			"holds another PostgreSQL cluster (system identifier 7) than the one slotagent created (42)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pgdata := filepath.Join(t.TempDir(), "data")
			tt.setup(t, pgdata)
			before := snapshot(t, pgdata)
			creds := *tt.creds
			fresh, err := inspect(pgdata, &creds, 15, me)
			switch {
			case tt.want == "fresh" && (!fresh || err != nil), tt.want == "" && (fresh || err != nil):
				t.Fatalf("fresh %v, err %v", fresh, err)
			case tt.want != "fresh" && tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err %v, want %q", err, tt.want)
			}
			if after := snapshot(t, pgdata); after != before {
				t.Errorf("inspect changed the data dir:\n%s\n%s", before, after)
			}
		})
	}
}

// snapshot lists the files under dir with their contents.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			data, _ := os.ReadFile(path)
			fmt.Fprintf(&b, "%s %x\n", path, data)
		}
		return nil
	})
	return b.String()
}

// connect runs psql with env's connection and returns its output.
func connect(t *testing.T, b Binaries, env map[string]string, sql string) (string, error) {
	t.Helper()
	cmd := exec.Command(b.Psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PGCONNECT_TIMEOUT=5", "PGSSLMODE=disable"}
	for k, v := range env {
		if k != "DATABASE_URL" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	out, err := reaper.Output(context.Background(), cmd)
	return strings.TrimSpace(string(out)), err
}
