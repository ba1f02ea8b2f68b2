package render

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Marker is the file that marks a directory as written by Write; it lists
// the files of that render. Being hidden, it never goes into the template
// tarball.
const Marker = ".slotprov-render"

const markerHeader = "# Written by slotprov render; these files are regenerated:"

// Write puts files into dir. dir may be missing, empty or a previous
// render (it has the Marker); anything else is refused unless force is set,
// before anything is written. Files of a previous render that this one no
// longer has are removed; other files (a .terraform.lock.hcl, say) are
// left alone.
func Write(dir string, files map[string][]byte, force bool) error {
	previous, err := previousRender(dir)
	if err != nil {
		return err
	}
	if previous == nil && !force {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("render: %w", err)
		}
		if len(entries) > 0 {
			return fmt.Errorf("render: %s exists and is not a previous render (no %s); use --force to write into it", dir, Marker)
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := writeFile(filepath.Join(dir, filepath.FromSlash(name)), files[name]); err != nil {
			return err
		}
	}
	for _, old := range previous {
		if _, still := files[old]; !still {
			if err := os.Remove(filepath.Join(dir, filepath.FromSlash(old))); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("render: remove stale %s: %w", old, err)
			}
			_ = os.Remove(filepath.Dir(filepath.Join(dir, filepath.FromSlash(old)))) // its folder, when now empty
		}
	}
	marker := markerHeader + "\n" + strings.Join(names, "\n") + "\n"
	return writeFile(filepath.Join(dir, Marker), []byte(marker))
}

// previousRender returns the files listed by dir's Marker, or nil when dir
// has none.
func previousRender(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, Marker))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	if !bytes.HasPrefix(b, []byte(markerHeader+"\n")) {
		return nil, fmt.Errorf("render: %s is not a slotprov marker; use --force to write into %s", filepath.Join(dir, Marker), dir)
	}
	files := []string{}
	sc := bufio.NewScanner(bytes.NewReader(b[len(markerHeader)+1:]))
	for sc.Scan() {
		name := sc.Text()
		// Only plain relative paths inside dir.
		if name == "" || filepath.IsAbs(name) || strings.Contains(name, "..") {
			continue
		}
		files = append(files, name)
	}
	return files, nil
}

// writeFile writes through a temporary file and a rename, so a reader never
// sees half a file.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("render: write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("render: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("render: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	return nil
}
