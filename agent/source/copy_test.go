package source

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// listTree returns the entries under dir as "path" for files, "path/" for
// folders and "path -> target" for symlinks.
func listTree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, rel+" -> "+target)
		case fi.IsDir():
			out = append(out, rel+"/")
		default:
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func TestCopyDirGitWorkTree(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "secret.txt"), "outside\n", 0o600)

	src := t.TempDir()
	git(t, src, "init", "-q", "-b", "main")
	writeFile(t, filepath.Join(src, ".gitignore"), "*.log\nnode_modules/\n.run/\n", 0o644)
	writeFile(t, filepath.Join(src, "committed.txt"), "committed\n", 0o644)
	writeFile(t, filepath.Join(src, "modified.txt"), "old\n", 0o644)
	writeFile(t, filepath.Join(src, "deleted.txt"), "gone soon\n", 0o644)
	writeFile(t, filepath.Join(src, "bin", "start.sh"), "#!/bin/sh\n", 0o755)
	if err := os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(src, "out-link")); err != nil {
		t.Fatal(err)
	}
	git(t, src, "add", "-A")
	git(t, src, "commit", "-q", "-m", "one")
	head := git(t, src, "rev-parse", "HEAD")

	// Clean tree first: desc is the bare commit id.
	clean := filepath.Join(t.TempDir(), "clean")
	desc, err := CopyDir(context.Background(), src, clean, nil)
	if err != nil || desc != head {
		t.Fatalf("CopyDir(clean) = %q, %v; want %q", desc, err, head)
	}

	writeFile(t, filepath.Join(src, "modified.txt"), "new\n", 0o644)
	writeFile(t, filepath.Join(src, "untracked.txt"), "untracked\n", 0o644)
	writeFile(t, filepath.Join(src, "sub", "untracked.js"), "x\n", 0o644)
	writeFile(t, filepath.Join(src, "debug.log"), "ignored\n", 0o644)
	writeFile(t, filepath.Join(src, "node_modules", "dep", "index.js"), "dep\n", 0o644)
	if err := os.Remove(filepath.Join(src, "deleted.txt")); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "release")
	var log bytes.Buffer
	desc, err = CopyDir(context.Background(), src, dest, &log)
	if err != nil {
		t.Fatalf("CopyDir: %v", err)
	}
	if desc != head+"-dirty" {
		t.Errorf("desc = %q, want %q", desc, head+"-dirty")
	}
	want := []string{
		".gitignore", "bin/", "bin/start.sh", "committed.txt", "modified.txt",
		"out-link -> " + filepath.Join(outside, "secret.txt"),
		"sub/", "sub/untracked.js", "untracked.txt",
	}
	if got := listTree(t, dest); !slices.Equal(got, want) {
		t.Errorf("copied:\n%q\nwant:\n%q", got, want)
	}
	if got := readFile(t, filepath.Join(dest, "modified.txt")); got != "new\n" {
		t.Errorf("modified.txt = %q, want the uncommitted content", got)
	}
	if fi, err := os.Stat(filepath.Join(dest, "bin", "start.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/start.sh mode = %v, %v", fi.Mode(), err)
	}
	if !strings.Contains(log.String(), "copied 6 files") {
		t.Errorf("log = %q", log.String())
	}
	// The source is left as it was: no index lock, same status.
	if _, err := os.Stat(filepath.Join(src, ".git", "index.lock")); err == nil {
		t.Error("index.lock left in the source repository")
	}

	// A destination inside the work tree (the agent's data dir in an
	// ignored .run/) is left out of the copy.
	inside := filepath.Join(src, ".run", "releases", "r1")
	if _, err := CopyDir(context.Background(), src, inside, nil); err != nil {
		t.Fatalf("CopyDir into an ignored folder of src: %v", err)
	}
	if got := listTree(t, inside); !slices.Equal(got, want) {
		t.Errorf("copied into .run:\n%q\nwant:\n%q", got, want)
	}
	// Even when the destination folder is not ignored.
	inside2 := filepath.Join(src, "out", "r2")
	if _, err := CopyDir(context.Background(), src, inside2, nil); err != nil {
		t.Fatalf("CopyDir into a folder of src: %v", err)
	}
	if got := listTree(t, inside2); !slices.Equal(got, want) {
		t.Errorf("copied into out/r2:\n%q\nwant:\n%q", got, want)
	}

	// A subfolder of a work tree copies that subfolder only, with the
	// repository's commit.
	subDest := filepath.Join(t.TempDir(), "sub")
	desc, err = CopyDir(context.Background(), filepath.Join(src, "bin"), subDest, nil)
	if err != nil || desc != head {
		t.Fatalf("CopyDir(bin) = %q, %v; want %q (bin has no changes)", desc, err, head)
	}
	if got := listTree(t, subDest); !slices.Equal(got, []string{"start.sh"}) {
		t.Errorf("copied from bin: %q", got)
	}
}

func TestCopyDirRepositoryWithoutCommits(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	git(t, src, "init", "-q")
	writeFile(t, filepath.Join(src, "a.txt"), "a\n", 0o644)
	desc, err := CopyDir(context.Background(), src, filepath.Join(t.TempDir(), "d"), nil)
	if err != nil || desc != "uncommitted" {
		t.Fatalf("CopyDir = %q, %v", desc, err)
	}
}

func TestCopyDirPlainFolder(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "secret.txt"), "outside\n", 0o600)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "server.js"), "js\n", 0o644)
	writeFile(t, filepath.Join(src, "run.sh"), "#!/bin/sh\n", 0o750)
	writeFile(t, filepath.Join(src, "lib", "util.js"), "util\n", 0o600)
	writeFile(t, filepath.Join(src, "node_modules", "dep", "index.js"), "dep\n", 0o644)
	writeFile(t, filepath.Join(src, "lib", "node_modules", "x.js"), "nested dep\n", 0o644)
	writeFile(t, filepath.Join(src, ".git", "config"), "not a repo\n", 0o644)
	writeFile(t, filepath.Join(src, ".env.example"), "A=1\n", 0o644)
	if err := os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(src, "abs-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../"+filepath.Base(outside), filepath.Join(src, "lib", "rel-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(src, "dir-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "lib"), 0o750); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "release")
	desc, err := CopyDir(context.Background(), src, dest, nil)
	if err != nil || desc != "folder" {
		t.Fatalf("CopyDir = %q, %v; want \"folder\"", desc, err)
	}
	want := []string{
		".env.example",
		"abs-link -> " + filepath.Join(outside, "secret.txt"),
		"dir-link -> " + outside,
		"lib/", "lib/rel-link -> ../../" + filepath.Base(outside), "lib/util.js",
		"run.sh", "server.js",
	}
	if got := listTree(t, dest); !slices.Equal(got, want) {
		t.Errorf("copied:\n%q\nwant:\n%q", got, want)
	}
	for name, mode := range map[string]os.FileMode{"run.sh": 0o750, "lib/util.js": 0o600, "lib": 0o750, "server.js": 0o644} {
		if fi, err := os.Stat(filepath.Join(dest, name)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s mode = %v, %v; want %v", name, fi.Mode().Perm(), err, mode)
		}
	}
	if got := readFile(t, filepath.Join(dest, "lib", "util.js")); got != "util\n" {
		t.Errorf("lib/util.js = %q", got)
	}
	// The links were copied, not their targets: nothing outside changed
	// and nothing of outside was copied in.
	if got := listTree(t, outside); !slices.Equal(got, []string{"secret.txt"}) {
		t.Errorf("outside changed: %q", got)
	}
}

func TestCopyDirBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "nope")
	dest := filepath.Join(t.TempDir(), "dest")
	if _, err := CopyDir(ctx, missing, dest, nil); err == nil || err.Error() != "folder "+missing+" does not exist" {
		t.Fatalf("missing src: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, "x", 0o644)
	if _, err := CopyDir(ctx, file, dest, nil); err == nil || !strings.Contains(err.Error(), "is not a folder") {
		t.Fatalf("file src: %v", err)
	}
	if _, err := os.Lstat(dest); err == nil {
		t.Fatal("dest created for a failed copy")
	}
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), "a", 0o644)
	if _, err := CopyDir(ctx, src, filepath.Join(src, "release"), nil); err == nil || !strings.Contains(err.Error(), "inside the folder") {
		t.Fatalf("dest inside src: %v", err)
	}
	full := t.TempDir()
	writeFile(t, filepath.Join(full, "keep"), "k", 0o644)
	if _, err := CopyDir(ctx, src, full, nil); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("non-empty dest: %v", err)
	}
	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := CopyDir(ctx2, src, dest, nil); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("canceled: %v", err)
	}
	if _, err := os.Lstat(dest); err == nil {
		t.Fatal("canceled copy left dest behind")
	}
}

func TestSafeRel(t *testing.T) {
	for _, p := range []string{"../x", "a/../../x", "/etc/passwd", ".."} {
		if _, err := safeRel(p); err == nil {
			t.Errorf("safeRel(%q) accepted", p)
		}
	}
	for p, want := range map[string]string{"a/b": "a/b", "a/./b/": "a/b", "a/../b": "b", ".": ""} {
		if got, err := safeRel(p); err != nil || got != want {
			t.Errorf("safeRel(%q) = %q, %v; want %q", p, got, err, want)
		}
	}
}
