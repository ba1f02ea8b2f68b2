package buildpack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/coder-slots/coder-slots/agent/internal/ctxtime"
	"github.com/coder-slots/coder-slots/agent/internal/envpath"
)

// venvDoneFile marks a virtualenv whose install succeeded; it holds the
// plan's LockHash.
const venvDoneFile = ".slotagent-done"

// Venv is the virtualenv of a Python plan, shared by every release with
// the same dependency set: <CacheDir>/python/venvs/<LockHash>. It is ""
// for other plans or without a CacheDir.
func (r *Runner) Venv(p Plan) string {
	if p.Language != Python || r.CacheDir == "" || p.LockHash == "" {
		return ""
	}
	return filepath.Join(r.CacheDir, "python", "venvs", p.LockHash)
}

// AppPath lists the folders that go first on the PATH of the app in dir:
// the plan's own (Go's bin/) and a Python plan's virtualenv bin/.
func (r *Runner) AppPath(dir string, p Plan) []string {
	var out []string
	for _, d := range p.Path {
		out = append(out, filepath.Join(dir, d))
	}
	if v := r.Venv(p); v != "" {
		out = append(out, filepath.Join(v, "bin"))
	}
	return out
}

// forPlan is r (every field but the lock) with the environment a plan's
// steps need: its folders first on PATH and, for Python, the virtualenv it
// fills.
func (r *Runner) forPlan(dir string, p Plan) *Runner {
	base := r.Env
	if base == nil {
		base = os.Environ()
	}
	env := envpath.Prepend(base, r.AppPath(dir, p))
	if v := r.Venv(p); v != "" {
		env = append(env, "VIRTUAL_ENV="+v, "UV_PROJECT_ENVIRONMENT="+v, "POETRY_VIRTUALENVS_CREATE=false",
			"PIP_CACHE_DIR="+filepath.Join(r.CacheDir, "pip"), "UV_CACHE_DIR="+filepath.Join(r.CacheDir, "uv"))
	}
	return &Runner{Env: env, CacheDir: r.CacheDir, Log: r.Log, Mask: r.Mask}
}

// installPython fills the plan's virtualenv, or reuses it when an earlier
// release filled it from the same dependency set. The virtualenv is locked
// while it is made, so two slots never fill the same one at once.
func (r *Runner) installPython(ctx context.Context, dir string, p Plan) (bool, error) {
	venv := r.Venv(p)
	if venv == "" {
		return false, errors.New("install: a Python app needs the runner's cache folder")
	}
	if err := os.MkdirAll(filepath.Dir(venv), 0o700); err != nil {
		return false, fmt.Errorf("install: %w", err)
	}
	unlock, err := lockFile(ctx, venv+".lock")
	if err != nil {
		return false, fmt.Errorf("install: lock the virtualenv: %w", err)
	}
	defer unlock()
	done := filepath.Join(venv, venvDoneFile)
	if data, err := os.ReadFile(done); err == nil && strings.TrimSpace(string(data)) == p.LockHash {
		r.logf("reusing the virtualenv %s (dependencies unchanged)", venv)
		return true, nil
	}
	if err := os.RemoveAll(venv); err != nil {
		return false, fmt.Errorf("install: remove a half-made virtualenv: %w", err)
	}
	sub := r.forPlan(dir, p)
	argv := slices.Clone(p.Install)
	if p.Manager != UV {
		if out, err := sub.run(ctx, dir, []string{"python3", "-m", "venv", venv}); err != nil {
			return false, out.fail("install", err)
		}
	}
	if p.Manager == Pip {
		argv[0] = filepath.Join(venv, "bin", "pip")
	}
	if out, err := sub.run(ctx, dir, argv); err != nil {
		return false, out.fail("install", err)
	}
	if err := writeMarker(done, p.LockHash); err != nil {
		return false, fmt.Errorf("install: %w", err)
	}
	return false, nil
}

// lockFile takes an exclusive lock on path, waiting until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		if err := ctxtime.Sleep(ctx, 50*time.Millisecond); err != nil {
			f.Close()
			return nil, err
		}
	}
}
