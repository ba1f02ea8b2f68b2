package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// skipNames are folders a plain folder copy leaves out, at any depth.
var skipNames = []string{"node_modules", ".git"}

// CopyDir copies the folder src into dest for a --dir deploy and describes
// what it copied. dest is created when missing and must otherwise be an
// empty folder; it may lie inside src only when src is in a git work tree
// (it is then left out of the copy).
//
// When src is inside a git work tree, the files git would see are copied:
// the tracked ones as they are now (with uncommitted changes, deleted ones
// left out) and the untracked ones that are not ignored; desc is the HEAD
// commit id, with "-dirty" appended when `git status` shows changes under
// src ("uncommitted" when the repository has no commit yet). A plain
// folder is copied whole except node_modules and .git folders, and desc is
// "folder".
//
// File modes are kept, symlinks are copied as symlinks (never followed, so
// a link out of src copies the link, not its target), other special files
// are skipped with a note in log. Nothing is ever written outside dest. On
// failure what was written is removed.
func CopyDir(ctx context.Context, src, dest string, log io.Writer) (desc string, err error) {
	if log == nil {
		log = io.Discard
	}
	fi, err := os.Stat(src)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("folder %s does not exist", src)
	case err != nil:
		return "", fmt.Errorf("folder %s: %w", src, err)
	case !fi.IsDir():
		return "", fmt.Errorf("%s is not a folder", src)
	}
	realSrc, err := realPath(src)
	if err != nil {
		return "", fmt.Errorf("folder %s: %w", src, err)
	}
	realDest, err := realPath(dest)
	if err != nil {
		return "", fmt.Errorf("destination %s: %w", dest, err)
	}
	files, desc, isGit, err := gitFiles(ctx, realSrc)
	if err != nil {
		return "", err
	}
	// A destination inside src would be copied into itself; from a git work
	// tree (where it normally sits in an ignored folder such as .run/) it
	// is just left out.
	skip := ""
	if within(realDest, realSrc) {
		if !isGit || realDest == realSrc {
			return "", fmt.Errorf("destination %s is inside the folder %s being copied", dest, src)
		}
		skip, _ = filepath.Rel(realSrc, realDest)
		skip = filepath.ToSlash(skip)
	}

	cleanup, err := prepareDest(realDest)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	srcRoot, err := os.OpenRoot(realSrc)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", src, err)
	}
	defer srcRoot.Close()
	dstRoot, err := os.OpenRoot(realDest)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", dest, err)
	}
	defer dstRoot.Close()
	c := &copier{ctx: ctx, src: srcRoot, dst: dstRoot, log: log}

	if isGit {
		for _, f := range files {
			if skip != "" && (f == skip || strings.HasPrefix(f, skip+"/")) {
				continue
			}
			if err := c.copyPath(f); err != nil {
				return "", err
			}
		}
	} else {
		desc = "folder"
		if err := c.copyTree("."); err != nil {
			return "", err
		}
	}
	if err := c.finish(); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "copied %d files from %s (%s)\n", c.files, src, desc)
	return desc, nil
}

// realPath returns the absolute path of p with symlinks resolved; when p
// does not exist, its deepest existing parent is resolved.
func realPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for dir := abs; ; dir = filepath.Dir(dir) {
		real, err := filepath.EvalSymlinks(dir)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) || dir == filepath.Dir(dir) {
			return "", err
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}

// within reports whether p is dir or inside it (both clean and absolute).
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// gitFiles lists what to copy from dir when it is inside a git work tree:
// the paths (relative to dir) of tracked and untracked-but-not-ignored
// files, and the description of the state. isGit is false for a plain
// folder (or when git cannot tell).
func gitFiles(ctx context.Context, dir string) (files []string, desc string, isGit bool, err error) {
	env := gitEnv(nil, "GIT_OPTIONAL_LOCKS=0")
	out, _, err := runGit(ctx, env, dir, nil, nil, "rev-parse", "--is-inside-work-tree")
	if ctx.Err() != nil {
		return nil, "", false, fmt.Errorf("copy %s: %w", dir, ctx.Err())
	}
	if err != nil || strings.TrimSpace(out) != "true" {
		return nil, "", false, nil
	}
	head, _, err := runGit(ctx, env, dir, nil, nil, "rev-parse", "--verify", "--quiet", "HEAD")
	desc = strings.TrimSpace(head)
	if err != nil || !isCommitID(desc) {
		if ctx.Err() != nil {
			return nil, "", false, fmt.Errorf("copy %s: %w", dir, ctx.Err())
		}
		desc = "uncommitted"
	}
	status, _, err := runGit(ctx, env, dir, nil, nil, "status", "--porcelain", "--untracked-files=normal", "--", ".")
	if err != nil {
		return nil, "", false, fmt.Errorf("git status in %s: %w", dir, err)
	}
	if strings.TrimSpace(status) != "" && desc != "uncommitted" {
		desc += "-dirty"
	}
	list, _, err := runGit(ctx, env, dir, nil, nil, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		return nil, "", false, fmt.Errorf("git ls-files in %s: %w", dir, err)
	}
	seen := map[string]bool{}
	for f := range strings.SplitSeq(list, "\x00") {
		if f != "" && !seen[f] {
			seen[f] = true
			files = append(files, f)
		}
	}
	return files, desc, true, nil
}

// safeRel cleans the relative path p and refuses one that is absolute or
// climbs out with "..". It returns "" for the folder itself.
func safeRel(p string) (string, error) {
	c := path.Clean(filepath.ToSlash(p))
	if path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("refusing to copy %q: the path leaves the folder", p)
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

// copier copies entries between two roots, so that no path, symlink or
// ".." can lead it out of either.
type copier struct {
	ctx   context.Context
	src   *os.Root
	dst   *os.Root
	log   io.Writer
	files int
	dirs  []dirMode
}

type dirMode struct {
	rel  string
	mode fs.FileMode
}

// copyPath copies one path listed by git; a path that no longer exists
// (a deleted tracked file) is skipped, a folder (a nested repository or a
// submodule) is copied like a plain folder.
func (c *copier) copyPath(p string) error {
	rel, err := safeRel(p)
	if err != nil || rel == "" {
		return err
	}
	fi, err := c.src.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return nil
	case err != nil:
		return fmt.Errorf("copy %s: %w", rel, err)
	case fi.IsDir():
		return c.copyTree(rel)
	}
	return c.copy(rel, fi)
}

// copyTree copies the folder rel and everything below it except
// node_modules and .git.
func (c *copier) copyTree(rel string) error {
	return fs.WalkDir(c.src.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("copy %s: %w", p, err)
		}
		if err := c.ctx.Err(); err != nil {
			return fmt.Errorf("copy: %w", err)
		}
		if p != "." && slices.Contains(skipNames, d.Name()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if p == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("copy %s: %w", p, err)
		}
		return c.copy(p, fi)
	})
}

// copy copies the single entry rel (not what is below a folder), whose
// Lstat info is fi.
func (c *copier) copy(rel string, fi fs.FileInfo) error {
	if err := c.ctx.Err(); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if dir := path.Dir(rel); dir != "." {
		if err := c.dst.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("copy %s: %w", rel, err)
		}
	}
	switch mode := fi.Mode(); {
	case mode.IsDir():
		if err := c.dst.Mkdir(rel, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("copy %s: %w", rel, err)
		}
		c.dirs = append(c.dirs, dirMode{rel, mode.Perm()})
	case mode&fs.ModeSymlink != 0:
		target, err := c.src.Readlink(rel)
		if err != nil {
			return fmt.Errorf("copy %s: %w", rel, err)
		}
		if err := c.dst.Symlink(target, rel); err != nil {
			return fmt.Errorf("copy %s: %w", rel, err)
		}
	case mode.IsRegular():
		if err := c.copyFile(rel, mode.Perm()); err != nil {
			return fmt.Errorf("copy %s: %w", rel, err)
		}
		c.files++
	default:
		fmt.Fprintf(c.log, "skipping %s: not a file, folder or symlink (%s)\n", rel, mode.Type())
	}
	return nil
}

func (c *copier) copyFile(rel string, perm fs.FileMode) error {
	in, err := c.src.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := c.dst.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(perm); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// finish gives the copied folders their modes, deepest first, so that a
// read-only folder is made so only once its content is written.
func (c *copier) finish() error {
	for i := len(c.dirs) - 1; i >= 0; i-- {
		d := c.dirs[i]
		if err := c.dst.Chmod(d.rel, d.mode); err != nil {
			return fmt.Errorf("copy %s: %w", d.rel, err)
		}
	}
	return nil
}
