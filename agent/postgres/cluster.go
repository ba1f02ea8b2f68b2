package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder-slots/coder-slots/agent/reaper"
)

// serverUser is who runs the server: the agent's own user (nil), unless
// the agent is root, which PostgreSQL refuses: then Debian's postgres user.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the agent runs as root, which PostgreSQL refuses, and there is no user postgres to run it as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// uid is the user the server runs as.
func uid(cred *syscall.Credential) uint32 {
	if cred == nil {
		return uint32(os.Geteuid())
	}
	return cred.Uid
}

// prepareDirs makes the server's directory; when the server runs as
// another user, it makes the directory and the agent's data dir above it
// searchable (not readable) by others and checks that the server's user
// can reach it.
func prepareDirs(dir string, cred *syscall.Credential) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if cred == nil {
		return nil
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
			return fmt.Errorf("let the postgres user through %s: %w", d, err)
		}
	}
	return reachable(dir, cred)
}

// reachable checks that every directory down to dir lets cred's user
// through (search permission as owner, group or other).
func reachable(dir string, cred *syscall.Credential) error {
	for d := dir; ; d = filepath.Dir(d) {
		var st syscall.Stat_t
		if err := syscall.Stat(d, &st); err != nil {
			return fmt.Errorf("stat %s: %w", d, err)
		}
		bit := uint32(0o001)
		switch {
		case st.Uid == cred.Uid:
			bit = 0o100
		case st.Gid == cred.Gid:
			bit = 0o010
		}
		if st.Mode&bit == 0 {
			return fmt.Errorf("the server runs as user postgres (the agent is root) and cannot get through %s (mode %o): let it (chmod o+x) or choose a data dir it can reach", d, st.Mode&0o777)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// inspect decides what the data dir holds: nothing (fresh: initdb makes a
// cluster), the cluster these credentials belong to, or something the
// agent must not touch, which is an error saying what and why.
func inspect(pgdata string, creds *Credentials, major int, owner uint32) (fresh bool, err error) {
	entries, err := os.ReadDir(pgdata)
	if errors.Is(err, fs.ErrNotExist) || err == nil && len(entries) == 0 {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the data dir: %w", err)
	}
	leave := "; slotagent leaves it as it is (move it away to have a new cluster made)"
	ver, err := os.ReadFile(filepath.Join(pgdata, "PG_VERSION"))
	if err != nil {
		return false, fmt.Errorf("%s is not empty and holds no PostgreSQL cluster (no PG_VERSION)%s", pgdata, leave)
	}
	if v := strings.TrimSpace(string(ver)); v != strconv.Itoa(major) {
		return false, fmt.Errorf("%s holds a PostgreSQL %q cluster but the server is version %d: upgrade the cluster (pg_upgrade) or set postgres.bin_dir to version %s's binaries", pgdata, v, major, v)
	}
	id, err := systemID(pgdata)
	if err != nil {
		return false, fmt.Errorf("%s is damaged: %w%s", pgdata, err, leave)
	}
	switch {
	case creds.SystemID == "" && creds.Passwords[Superuser] == "":
		return false, fmt.Errorf("%s holds a PostgreSQL cluster that slotagent did not create (it has no credentials for it)%s", pgdata, leave)
	case creds.SystemID != "" && creds.SystemID != id:
		return false, fmt.Errorf("%s holds another PostgreSQL cluster (system identifier %s) than the one slotagent created (%s)%s", pgdata, id, creds.SystemID, leave)
	}
	creds.SystemID = id // a first boot that ended before recording it
	var st syscall.Stat_t
	if err := syscall.Stat(pgdata, &st); err != nil {
		return false, fmt.Errorf("stat %s: %w", pgdata, err)
	}
	if st.Uid != owner {
		return false, fmt.Errorf("%s is owned by uid %d but the server runs as uid %d", pgdata, st.Uid, owner)
	}
	return false, nil
}

// controlFileSize is the size of global/pg_control in every version.
const controlFileSize = 8192

// systemID reads the cluster's system identifier, the first field of
// global/pg_control (in the machine's byte order).
func systemID(pgdata string) (string, error) {
	b, err := os.ReadFile(filepath.Join(pgdata, "global", "pg_control"))
	if err != nil {
		return "", fmt.Errorf("read global/pg_control: %w", err)
	}
	if len(b) != controlFileSize {
		return "", fmt.Errorf("global/pg_control has %d bytes, not %d", len(b), controlFileSize)
	}
	return strconv.FormatUint(binary.NativeEndian.Uint64(b), 10), nil
}

// initdb makes a new cluster in pgdata with the superuser password's
// verifier, password authentication for every connection, UTF-8 and the C
// locale (present in every image).
func initdb(ctx context.Context, b Binaries, pgdata, password string, cred *syscall.Credential) error {
	if err := os.MkdirAll(pgdata, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", pgdata, err)
	}
	verifier, err := scramVerifier(password)
	if err != nil {
		return err
	}
	pwfile := filepath.Join(filepath.Dir(pgdata), ".initdb-password")
	if err := os.WriteFile(pwfile, []byte(verifier+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", pwfile, err)
	}
	defer os.Remove(pwfile)
	if cred != nil {
		for _, p := range []string{pgdata, pwfile} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return fmt.Errorf("give %s to the postgres user: %w", p, err)
			}
		}
	}
	cmd := exec.Command(b.Initdb(), "-D", pgdata, "-U", Superuser, "--pwfile="+pwfile,
		"--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-instructions")
	cmd.Dir, cmd.Env = "/", serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := reaper.Output(ctx, cmd); err != nil {
		return fmt.Errorf("initdb %s: %w", pgdata, err)
	}
	return nil
}

// serverEnv is the environment of the server and initdb: nothing of the
// agent's (no tokens), only PATH.
func serverEnv() []string { return []string{"PATH=" + os.Getenv("PATH")} }

// removeStalePID removes the postmaster.pid of a server that was killed
// (a container restart) when its PID now belongs to a process that is not
// a postgres: the new server would take that process for a live server and
// refuse to start. It reports whether it removed the file.
func removeStalePID(pgdata string) bool {
	path := filepath.Join(pgdata, "postmaster.pid")
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return false
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == "postgres" {
		return false
	}
	return os.Remove(path) == nil
}
