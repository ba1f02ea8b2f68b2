package buildpack

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/coder-slots/coder-slots/agent/reaper"
)

// Python's dependency tools, as Plan.Manager.
const (
	Pip    Manager = "pip"
	UV     Manager = "uv"
	Poetry Manager = "poetry"
)

// pythonFiles are the files whose contents make a virtualenv: two apps
// with equal files (and the same interpreter) share one.
var pythonFiles = []string{"requirements.txt", "pyproject.toml", "uv.lock", "poetry.lock", ".python-version"}

// isPython matches requirements.txt, or pyproject.toml with uv.lock or
// poetry.lock.
func isPython(dir string) (bool, error) {
	if ok, err := fileExists(dir, "requirements.txt"); ok || err != nil {
		return ok, err
	}
	if ok, err := fileExists(dir, "pyproject.toml"); !ok || err != nil {
		return false, err
	}
	for _, lock := range []string{"uv.lock", "poetry.lock"} {
		if ok, err := fileExists(dir, lock); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// detectPython plans a Python app: a virtualenv per dependency set (see
// Runner.Venv), filled by uv sync or poetry install when their lockfile is
// there and the tool is installed, else by pip install -r requirements.txt.
// It starts only with start: Python has no default, as on Heroku.
func detectPython(dir string, opt Options, start string) (Plan, error) {
	p := Plan{Language: Python, Build: opt.Build, Start: start}
	for _, c := range []struct {
		lock string
		tool Manager
	}{{"uv.lock", UV}, {"poetry.lock", Poetry}} {
		ok, err := fileExists(dir, c.lock)
		if err != nil {
			return p, err
		}
		if !ok {
			continue
		}
		if _, err := exec.LookPath(string(c.tool)); err == nil {
			p.Manager, p.Lockfile = c.tool, c.lock
			break
		}
		if ok, _ := fileExists(dir, "requirements.txt"); !ok {
			return p, fmt.Errorf("%s found but %s is not installed: install it in the workspace image, or add a requirements.txt", c.lock, c.tool)
		}
	}
	if p.Manager == "" {
		p.Manager, p.Lockfile = Pip, "requirements.txt"
	}
	version, err := pythonVersion(p.Manager != UV)
	if err != nil {
		return p, fmt.Errorf("%s found but %v", p.Lockfile, err)
	}
	switch p.Manager {
	case UV:
		p.Install = []string{"uv", "sync", "--frozen", "--no-dev", "--no-install-project"}
	case Poetry:
		p.Install = []string{"poetry", "install", "--no-root", "--only", "main", "--no-interaction"}
	default:
		p.Install = []string{"pip", "install", "--no-input", "--disable-pip-version-check", "-r", "requirements.txt"}
	}
	if p.LockHash, err = pythonHash(dir, p.Manager, version); err != nil {
		return p, err
	}
	if p.Start == "" {
		return p, fmt.Errorf("%s found but no start command: add a Procfile with a web: line (e.g. web: gunicorn app:app) or pass --start", p.Lockfile)
	}
	return p, nil
}

// probeTimeout bounds the interpreter check of Detect.
const probeTimeout = 20 * time.Second

// pythonVersion asks python3 for its version and, with needVenv, checks it
// can make a virtualenv with pip (Debian's python3-venv).
func pythonVersion(needVenv bool) (string, error) {
	if _, err := exec.LookPath("python3"); err != nil {
		return "", errors.New("python3 is not installed: add python3, python3-venv and python3-pip to the workspace image")
	}
	script := "import sys; print(sys.version.split()[0], sys.executable)"
	if needVenv {
		script = "import venv, ensurepip; " + script
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	out, err := reaper.Output(ctx, exec.Command("python3", "-c", script))
	if err != nil {
		if needVenv {
			return "", errors.New("python3 cannot make a virtualenv (no venv/ensurepip): add python3-venv to the workspace image")
		}
		return "", fmt.Errorf("python3 does not run: %v", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// pythonHash hashes what determines a virtualenv: the tool, the
// interpreter and the dependency files.
func pythonHash(dir string, tool Manager, version string) (string, error) {
	return hashParts(dir, [][2]string{{"buildpack-python-v1", string(tool)}, {"python", version}}, pythonFiles)
}
