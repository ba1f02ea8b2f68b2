// Package atomicfile replaces files so that a crash or a power loss at any
// moment leaves either the old or the new content, never a torn file, and
// a replacement that returned survives a power loss.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// mu serialises Writes in this process: each removes the temporary files an
// earlier, killed Write left, which must not be another's file under way.
var mu sync.Mutex

// Write replaces path with data, with mode perm: it removes the temporary
// files a killed Write of path left, writes a temporary file
// ".<name>.tmp-*" in the same directory, syncs and closes it, renames it
// over path and syncs the directory. Only one process may write a path.
func Write(path string, data []byte, perm os.FileMode) error {
	mu.Lock()
	defer mu.Unlock()
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	prefix := TempPrefix(name)
	RemoveTemps(dir, prefix)
	f, err := os.CreateTemp(dir, prefix+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	renamed = true
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// TempPrefix is how the names of Write's temporary files for a file named
// name begin.
func TempPrefix(name string) string { return "." + name + ".tmp-" }

// RemoveTemps removes the regular files in dir whose names start with
// prefix. Errors are ignored: a leftover that cannot be removed is harmless.
func RemoveTemps(dir, prefix string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// SyncDir fsyncs directory dir, making a rename or a creation in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
