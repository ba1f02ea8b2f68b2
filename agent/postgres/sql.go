package postgres

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/coder-slots/coder-slots/agent/reaper"
)

// database is one role and its database.
type database struct {
	slot string // "" for the workspace database
	role string
	name string
}

// The workspace user's own role and database, for their shell.
const (
	WorkspaceRole     = "workspace"
	WorkspaceDatabase = "workspace_db"
)

// SlotRole is the role, and the database, of a slot: slot_a for slot a.
func SlotRole(slot string) string { return "slot_" + slot }

// psql runs script as the superuser in database postgres and returns what
// it printed: rows unaligned, fields separated by tabs, no headers. The
// script goes through a pipe, so nothing of it shows in the process list;
// the superuser's password goes in the environment.
func psql(ctx context.Context, b Binaries, port int, password, script string) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", fmt.Errorf("psql: %w", err)
	}
	defer r.Close()
	go func() {
		_, _ = io.WriteString(w, script) // fails once psql has gone: its error says why
		w.Close()
	}()
	cmd := exec.Command(b.Psql, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=terse",
		"-h", Host, "-p", strconv.Itoa(port), "-U", Superuser, "-d", "postgres", "-f", "-")
	cmd.Env = append(serverEnv(), "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=5", "PGAPPNAME=slotagent", "PGSSLMODE=disable", "LC_ALL=C")
	cmd.Stdin = r
	out, err := reaper.Output(ctx, cmd)
	if err != nil {
		return "", fmt.Errorf("psql: %w", err)
	}
	return string(out), nil
}

// quoteIdent quotes an SQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// quoteLiteral quotes an SQL string literal; one with backslashes is an
// escape string, so it reads the same whatever standard_conforming_strings is.
func quoteLiteral(s string) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		q = "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}

// ensureSQL creates db's role and database unless they exist, sets the
// role's password (by its verifier), and lets only the role connect.
func ensureSQL(db database, verifier string) string {
	role := quoteIdent(db.role)
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT %s WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) \\gexec\n",
		quoteLiteral("CREATE ROLE "+role), quoteLiteral(db.role))
	fmt.Fprintf(&b, "ALTER ROLE %s WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %s;\n", role, quoteLiteral(verifier))
	b.WriteString(createDatabaseSQL(db))
	return b.String()
}

// createDatabaseSQL creates db's database unless it exists, owned by its
// role, which alone may connect.
func createDatabaseSQL(db database) string {
	role, name := quoteIdent(db.role), quoteIdent(db.name)
	return fmt.Sprintf("SELECT %s WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = %s) \\gexec\n",
		quoteLiteral("CREATE DATABASE "+name+" OWNER "+role), quoteLiteral(db.name)) +
		fmt.Sprintf("ALTER DATABASE %s OWNER TO %s;\nREVOKE ALL ON DATABASE %s FROM PUBLIC;\n", name, role, name)
}

// lockdownSQL keeps every role but the superuser out of the maintenance
// databases: a slot's role reaches its own database only.
const lockdownSQL = "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;\nREVOKE CONNECT ON DATABASE template1 FROM PUBLIC;\n"

// resetSQL drops db's database, disconnecting its clients, and makes it anew.
func resetSQL(db database) string {
	return fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE);\n", quoteIdent(db.name)) + createDatabaseSQL(db)
}

// sizesSQL lists the size in bytes of every database of dbs that exists.
func sizesSQL(dbs []database) string {
	names := make([]string, len(dbs))
	for i, db := range dbs {
		names[i] = quoteLiteral(db.name)
	}
	return "SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname IN (" + strings.Join(names, ", ") + ");\n"
}

// parseSizes reads the rows of sizesSQL.
func parseSizes(out string) map[string]int64 {
	sizes := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, size, ok := strings.Cut(line, "\t")
		if n, err := strconv.ParseInt(size, 10, 64); ok && err == nil {
			sizes[name] = n
		}
	}
	return sizes
}
