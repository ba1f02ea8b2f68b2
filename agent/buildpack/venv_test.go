package buildpack

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestPruneVenvsKeepsWhatAReleaseOrADeployUses: of the cache's
// virtualenvs only the one no kept release uses, no deploy touched within
// the grace and no install holds is removed; a half-made one goes by its
// folder's age.
func TestPruneVenvsKeepsWhatAReleaseOrADeployUses(t *testing.T) {
	r := &Runner{CacheDir: t.TempDir()}
	root := filepath.Join(r.CacheDir, "python", "venvs")
	old := time.Now().Add(-2 * time.Hour)
	mkVenv := func(name string, done bool, at time.Time) string {
		venv := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(venv, "bin"), 0o700); err != nil {
			t.Fatal(err)
		}
		if done {
			marker := filepath.Join(venv, venvDoneFile)
			if err := writeMarker(marker, name); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(marker, at, at); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(venv, at, at); err != nil {
			t.Fatal(err)
		}
		return venv
	}
	unused := mkVenv("unused", true, old)
	released := mkVenv("released", true, old)
	recent := mkVenv("recent", true, time.Now())
	halfOld := mkVenv("half-old", false, old)
	halfNew := mkVenv("half-new", false, time.Now())
	locked := mkVenv("locked", true, old)
	unlock, err := tryLockFile(locked + ".lock")
	if err != nil || unlock == nil {
		t.Fatalf("lock: %v", err)
	}
	defer unlock()

	// The release's path may spell the data dir otherwise.
	inUse := []string{"/somewhere/release/bin", "/data/../data/cache/python/venvs/released/bin/", "/venvs/unused/lib"}
	removed, err := r.PruneVenvs(inUse, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if want := []string{halfOld, unused}; !slices.Equal(removed, want) {
		t.Fatalf("removed %q, want %q", removed, want)
	}
	for _, venv := range []string{released, recent, halfNew, locked} {
		if _, err := os.Stat(venv); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(venv), err)
		}
	}
	for _, venv := range []string{unused, halfOld} {
		if _, err := os.Stat(venv); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", filepath.Base(venv), err)
		}
	}
	// A cache without Python apps has nothing to prune.
	if removed, err := (&Runner{CacheDir: t.TempDir()}).PruneVenvs(nil, time.Hour); err != nil || removed != nil {
		t.Fatalf("empty cache: %q %v", removed, err)
	}
}
