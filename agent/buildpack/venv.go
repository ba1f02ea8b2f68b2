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
		// Used now: PruneVenvs leaves it alone until this deploy is recorded.
		now := time.Now()
		_ = os.Chtimes(done, now, now)
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
	for {
		unlock, err := tryLockFile(path)
		if err != nil || unlock != nil {
			return unlock, err
		}
		if err := ctxtime.Sleep(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// tryLockFile takes an exclusive lock on path if no one holds it (a nil
// unlock and no error: someone does).
func tryLockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return func() { f.Close() }, nil
	}
	f.Close()
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, nil
	}
	return nil, err
}

// PruneVenvs removes the virtualenvs of the cache that no kept release
// uses and that no deploy made or reused within grace (a deploy under way
// has not recorded its release yet: grace is the longest a deploy may
// take). inUse lists the PATH folders of every kept release of every slot;
// a virtualenv is in use when its bin/ is one of them, matched by name
// (the data dir may have been spelled otherwise when the release was
// made). One being filled (locked) is left alone. It returns the folders
// it removed.
func (r *Runner) PruneVenvs(inUse []string, grace time.Duration) ([]string, error) {
	root := filepath.Join(r.CacheDir, "python", "venvs")
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("prune virtualenvs: %w", err)
	}
	used := map[string]bool{}
	for _, p := range inUse {
		venv := filepath.Dir(filepath.Clean(p))
		if filepath.Base(p) == "bin" && filepath.Base(filepath.Dir(venv)) == "venvs" {
			used[filepath.Base(venv)] = true
		}
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		venv := filepath.Join(root, e.Name())
		if !e.IsDir() || used[e.Name()] {
			continue
		}
		gone, err := pruneVenv(venv, time.Now().Add(-grace))
		if err != nil {
			errs = append(errs, err)
		}
		if gone {
			removed = append(removed, venv)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("prune virtualenvs: %w", err)
	}
	return removed, nil
}

// pruneVenv removes venv unless it is locked or was made, filled or
// reused after cutoff. Its lock file stays: a deploy may be waiting on it.
func pruneVenv(venv string, cutoff time.Time) (bool, error) {
	unlock, err := tryLockFile(venv + ".lock")
	if err != nil || unlock == nil {
		return false, err
	}
	defer unlock()
	info, err := os.Stat(filepath.Join(venv, venvDoneFile))
	if err != nil {
		// Half made (its install failed or was killed): its folder's age.
		if info, err = os.Stat(venv); err != nil {
			return false, err
		}
	}
	if info.ModTime().After(cutoff) {
		return false, nil
	}
	if err := os.RemoveAll(venv); err != nil {
		return false, err
	}
	return true, nil
}
