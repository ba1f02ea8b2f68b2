package postgres

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/coder-slots/coder-slots/agent/reaper"
)

// Binaries are the PostgreSQL programs the agent runs.
type Binaries struct {
	// Dir holds postgres and initdb.
	Dir string
	// Psql is the psql of Dir, or the one on PATH.
	Psql string
	// Major is the server's major version, e.g. 15.
	Major int
}

// Postgres is the path of the server program.
func (b Binaries) Postgres() string { return filepath.Join(b.Dir, "postgres") }

// Initdb is the path of initdb.
func (b Binaries) Initdb() string { return filepath.Join(b.Dir, "initdb") }

// debianRoot holds Debian's versioned installations, <root>/<major>/bin.
const debianRoot = "/usr/lib/postgresql"

// FindBinaries finds the server's programs: in dir when it is set, else in
// the directory of postgres on PATH, else in Debian's newest
// /usr/lib/postgresql/<major>/bin.
func FindBinaries(ctx context.Context, dir string) (Binaries, error) {
	b, err := LocateBinaries(dir)
	if err != nil {
		return b, err
	}
	b.Major, err = serverMajor(ctx, b.Postgres())
	return b, err
}

// LocateBinaries is FindBinaries without asking the server for its
// version (Major is 0): it only looks at files, so it cannot hang and
// starts no process.
func LocateBinaries(dir string) (Binaries, error) {
	if dir == "" {
		dir = searchBinDir()
		if dir == "" {
			return Binaries{}, fmt.Errorf("no PostgreSQL server binaries (postgres, initdb) on PATH or in %s/<version>/bin", debianRoot)
		}
	}
	for _, prog := range []string{"postgres", "initdb"} {
		if !executable(filepath.Join(dir, prog)) {
			return Binaries{}, fmt.Errorf("no PostgreSQL server binaries (postgres, initdb) in %s", dir)
		}
	}
	b := Binaries{Dir: dir, Psql: filepath.Join(dir, "psql")}
	if !executable(b.Psql) {
		var err error
		if b.Psql, err = exec.LookPath("psql"); err != nil {
			return Binaries{}, fmt.Errorf("no psql in %s or on PATH: %w", dir, err)
		}
	}
	return b, nil
}

// searchBinDir is the directory of postgres on PATH (symlinks resolved, so
// initdb is found beside it), else Debian's newest version, else "".
func searchBinDir() string {
	if p, err := exec.LookPath("postgres"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && executable(filepath.Join(filepath.Dir(real), "initdb")) {
			return filepath.Dir(real)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(debianRoot, "*", "bin"))
	version := func(d string) int { n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d))); return n }
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if executable(filepath.Join(d, "postgres")) && executable(filepath.Join(d, "initdb")) {
			return d
		}
	}
	return ""
}

func executable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

var versionRe = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// serverMajor asks the server program for its major version.
func serverMajor(ctx context.Context, postgres string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := reaper.Output(ctx, exec.Command(postgres, "--version"))
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", postgres, err)
	}
	m := versionRe.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("%s --version: unexpected answer %q", postgres, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n, nil
}
