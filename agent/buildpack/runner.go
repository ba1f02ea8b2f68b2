package buildpack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/coder-slots/coder-slots/agent/internal/atomicfile"
	"github.com/coder-slots/coder-slots/agent/reaper"
)

// LockHashFile is the file Install writes into the app directory after a
// successful install: it holds the Plan's LockHash, so a later Install can
// tell whether this release's node_modules matches its own lockfile. Install
// deletes a copy that came with the app's files before doing anything else.
const LockHashFile = ".slotagent-lockhash"

// skipOnReuse names top-level entries of node_modules that Install does not
// carry over from the previous release: build tools keep caches there and may
// rewrite their files in place, which through a hard link would change the
// previous release too.
var skipOnReuse = []string{".cache", ".vite"}

// Runner runs the install and build steps of a Plan.
type Runner struct {
	// Env is the base environment of the commands; nil means the agent's own
	// environment. Runner adds CI=true and, when CacheDir is set, the cache
	// locations of the package managers: npm_config_cache=<CacheDir>/npm,
	// YARN_CACHE_FOLDER=<CacheDir>/yarn,
	// pnpm_config_store_dir=<CacheDir>/pnpm-store, and Go's
	// GOMODCACHE=<CacheDir>/go/mod and GOCACHE=<CacheDir>/go/build (unless
	// Env sets them).
	Env []string
	// CacheDir holds the package managers' shared, persistent caches; ""
	// leaves them at their defaults. pnpm install also gets
	// --store-dir=<CacheDir>/pnpm-store. Keep it on the same file system as the
	// releases so pnpm can hard-link from its store.
	CacheDir string
	// Log receives all output of the commands, line by line as it happens,
	// and Runner's own notes (the commands it runs, reuse, warnings) as lines
	// starting with "==> ". Writes are serialized by the Runner, so Log
	// need not be safe for concurrent use, but it must not be written by
	// others while Install or Build runs. Nil discards.
	Log io.Writer
	// Mask, when set, is applied to every line of the commands' output
	// before it is written to Log or kept to be quoted in an error (where
	// it may be cut short: a cut secret would escape a later mask). Nil
	// keeps lines as they are.
	Mask func(string) string

	mu sync.Mutex // serializes writes to Log
}

// Install installs the dependencies of the app in dir as planned by p, and
// reports whether it reused the previous release's node_modules (or, for
// Python, the virtualenv of the same dependency set) instead. A Go plan
// downloads its modules into the shared module cache; a Python plan fills
// its virtualenv (see Venv); what follows is about Node.js.
//
// prev is the previous release's directory, or "". When prev has a
// node_modules directory and its LockHashFile equals p.LockHash, Install
// recreates prev/node_modules as dir/node_modules and runs no install: new
// directories, files hard-linked to prev's (so neither release may rewrite
// them in place), symlinks recreated with absolute targets inside prev moved
// into dir; build caches (node_modules/.cache, node_modules/.vite) are not
// carried over. No directory is shared and nothing points into prev. When
// linking fails (e.g. prev is on another file system), Install logs why and
// installs normally.
//
// Otherwise it runs p.Install in dir; when `npm ci` fails because
// package.json and the lockfile are out of sync, it logs a warning and runs
// `npm install`. After a successful install, Install writes p.LockHash to
// dir/LockHashFile. A failure's error names the command, how it exited and
// what its output said last.
func (r *Runner) Install(ctx context.Context, dir string, p Plan, prev string) (reused bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("install: %w", err)
	}
	marker := filepath.Join(dir, LockHashFile)
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("install: %w", err)
	}
	if p.Install == nil {
		r.logf("nothing to install")
		return false, nil
	}
	switch p.Language {
	case Python:
		return r.installPython(ctx, dir, p)
	case Go:
		if out, err := r.run(ctx, dir, p.Install); err != nil {
			return false, out.fail("install", err)
		}
		return false, nil
	}

	if r.canReuse(dir, p, prev) {
		r.logf("reusing node_modules of %s (lockfile unchanged)", prev)
		start := time.Now()
		// A build may rewrite files in node_modules in place (prisma
		// generate does): then the files are copied, never shared.
		copyFiles := p.Build != ""
		n, err := r.reuse(ctx, prev, dir, copyFiles)
		if err == nil {
			if err := writeMarker(marker, p.LockHash); err != nil {
				return false, fmt.Errorf("install: %w", err)
			}
			how := "linked"
			if copyFiles {
				how = "copied (the build may change them)"
			}
			r.logf("%s %d files in %s", how, n, time.Since(start).Round(time.Millisecond))
			return true, nil
		}
		if ctx.Err() != nil {
			return false, fmt.Errorf("install: reuse node_modules of %s: %w", prev, err)
		}
		r.logf("warning: could not reuse node_modules of %s: %v; installing instead", prev, err)
		if err := os.RemoveAll(filepath.Join(dir, "node_modules")); err != nil {
			return false, fmt.Errorf("install: remove partial node_modules: %w", err)
		}
	}

	out, err := r.run(ctx, dir, r.installArgv(p))
	if err != nil && p.Manager == NPM && len(p.Install) > 1 && p.Install[1] == "ci" && out.outOfSync && ctx.Err() == nil {
		r.logf("warning: %s is out of sync with package.json: running npm install instead", p.Lockfile)
		out, err = r.run(ctx, dir, npmInstallArgs())
	}
	if err != nil {
		return false, out.fail("install", err)
	}
	if err := writeMarker(marker, p.LockHash); err != nil {
		return false, fmt.Errorf("install: %w", err)
	}
	return false, nil
}

// Build runs p.Build with sh -c in dir; it does nothing when p.Build is
// empty. A failure's error names the command, how it exited and the last
// lines of its output.
func (r *Runner) Build(ctx context.Context, dir string, p Plan) error {
	if strings.TrimSpace(p.Build) == "" {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	r.logf("$ %s", p.Build)
	out, err := r.forPlan(dir, p).runLine(ctx, dir, []string{"sh", "-c", p.Build}, p.Build)
	if err != nil {
		return out.fail("build", err)
	}
	return nil
}

// canReuse reports whether prev's node_modules was installed from the same
// lockfile as p.
func (r *Runner) canReuse(dir string, p Plan, prev string) bool {
	if prev == "" || p.LockHash == "" {
		return false
	}
	if same, err := sameDir(dir, prev); err != nil || same {
		return false
	}
	info, err := os.Lstat(filepath.Join(prev, "node_modules"))
	if err != nil || !info.IsDir() {
		return false
	}
	data, err := readAppFile(prev, LockHashFile)
	return err == nil && strings.TrimSpace(string(data)) == p.LockHash
}

func sameDir(a, b string) (bool, error) {
	ia, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	ib, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(ia, ib), nil
}

// reuse rebuilds prev/node_modules as dir/node_modules out of hard links,
// or of copies (copy-on-write clones where the file system has them).
func (r *Runner) reuse(ctx context.Context, prev, dir string, copyFiles bool) (int, error) {
	dst := filepath.Join(dir, "node_modules")
	if err := os.RemoveAll(dst); err != nil {
		return 0, err
	}
	place := os.Link
	if copyFiles {
		place = cloneFile
	}
	return linkTree(ctx, filepath.Join(prev, "node_modules"), dst, prev, dir, place)
}

// cloneFile copies src to dst with its mode: a copy-on-write clone
// (FICLONE) where the file system supports it, else a plain copy.
func cloneFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return err
	}
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) != nil {
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
	}
	return out.Close()
}

// linkTree recreates the tree src at dst: directories are made anew with the
// same permissions, regular files are placed with place (a hard link or a
// copy), symlinks are recreated
// (an absolute target inside oldRoot is moved to the same place under
// newRoot), anything else is skipped, as are the top-level entries named in
// skipOnReuse. It returns the number of files linked.
func linkTree(ctx context.Context, src, dst, oldRoot, newRoot string, place func(src, dst string) error) (int, error) {
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var readOnly []dirMode
	files := 0
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if !strings.ContainsRune(rel, filepath.Separator) && slices.Contains(skipOnReuse, rel) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			info, err := d.Info()
			if err != nil {
				return err
			}
			mode := info.Mode().Perm()
			if err := os.Mkdir(target, mode|0o700); err != nil {
				return err
			}
			if mode&0o700 != 0o700 {
				readOnly = append(readOnly, dirMode{target, mode})
			}
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if filepath.IsAbs(link) {
				if rel, err := filepath.Rel(oldRoot, link); err == nil && filepath.IsLocal(rel) {
					link = filepath.Join(newRoot, rel)
				}
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case d.Type().IsRegular():
			if err := place(path, target); err != nil {
				return err
			}
			files++
		}
		return nil
	})
	if err != nil {
		return files, err
	}
	for i := len(readOnly) - 1; i >= 0; i-- {
		if err := os.Chmod(readOnly[i].path, readOnly[i].mode); err != nil {
			return files, err
		}
	}
	return files, nil
}

// writeMarker writes the lock hash atomically: a rename never changes a file
// that might be hard-linked elsewhere. The release's files come from the
// pushed tree, so nothing there is followed: the temporary file is made
// anew under a random name (O_EXCL: a link in its place is refused) and
// the rename replaces whatever is at path, a link included.
func writeMarker(path, hash string) error {
	return atomicfile.Write(path, []byte(hash+"\n"), 0o644)
}

// env is the environment of the install and build commands.
func (r *Runner) env() []string {
	env := r.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(slices.Clip(env), "CI=true")
	if r.CacheDir != "" {
		// Not npm_config_store_dir: npm warns about every npm_config_ name
		// it does not know. pnpm install gets --store-dir instead.
		env = append(env,
			"npm_config_cache="+filepath.Join(r.CacheDir, "npm"),
			"YARN_CACHE_FOLDER="+filepath.Join(r.CacheDir, "yarn"),
			"pnpm_config_store_dir="+r.pnpmStore(),
		)
		// Go: modules and build results shared by every release, unless
		// the environment names caches of its own.
		for _, kv := range [][2]string{{"GOMODCACHE", "mod"}, {"GOCACHE", "build"}} {
			if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, kv[0]+"=") }) {
				env = append(env, kv[0]+"="+filepath.Join(r.CacheDir, "go", kv[1]))
			}
		}
	}
	return env
}

// pnpmStore is the pnpm store under CacheDir.
func (r *Runner) pnpmStore() string { return filepath.Join(r.CacheDir, "pnpm-store") }

// installArgv is p.Install with the cache location for pnpm, which has no
// environment variable that every version reads.
func (r *Runner) installArgv(p Plan) []string {
	argv := slices.Clone(p.Install)
	if p.Manager == PNPM && r.CacheDir != "" {
		argv = append(argv, "--store-dir="+r.pnpmStore())
	}
	return argv
}

// run logs and runs an argument list in dir.
func (r *Runner) run(ctx context.Context, dir string, argv []string) (*output, error) {
	line := commandLine(argv)
	r.logf("$ %s", line)
	return r.runLine(ctx, dir, argv, line)
}

// runLine runs argv in dir through the reaper with its output going to Log;
// line is how the command is named in errors.
func (r *Runner) runLine(ctx context.Context, dir string, argv []string, line string) (*output, error) {
	out := &output{command: line}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = r.env()
	stdout := &lineWriter{r: r, out: out}
	stderr := &lineWriter{r: r, out: out}
	err := reaper.RunTo(ctx, cmd, stdout, stderr)
	stdout.flush()
	stderr.flush()
	return out, err
}

// logf writes one line of the Runner's own to Log.
func (r *Runner) logf(format string, args ...any) {
	r.writeLine(nil, fmt.Sprintf("==> "+format, args...))
}

// writeLine writes one line to Log and lets out look at it, both masked.
func (r *Runner) writeLine(out *output, line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Mask != nil {
		line = r.Mask(line)
	}
	if out != nil {
		out.see(line)
	}
	if r.Log != nil {
		// A failing log must not fail the command: the copy into it would
		// stop and the command would die of a broken pipe.
		_, _ = io.WriteString(r.Log, line+"\n")
	}
}

// tailLines is how many of a command's last output lines an error quotes.
const tailLines = 3

// output remembers what a command printed that matters afterwards. Its
// fields are guarded by the Runner's mu.
type output struct {
	command string
	// npmError is npm's first error line that says what went wrong.
	npmError string
	// tail holds the last informative lines that are not npm's errors.
	tail      []string
	outOfSync bool
}

// npmBoilerplate starts npm error lines that say nothing by themselves.
var npmBoilerplate = []string{"code ", "errno ", "syscall ", "path ", "command ", "command failed",
	"A complete log of this run", "Usage:"}

// see looks at one output line.
func (o *output) see(line string) {
	if strings.Contains(line, "can only install packages when your package.json") ||
		strings.Contains(line, "are in sync") {
		o.outOfSync = true
	}
	s := strings.TrimSpace(line)
	if s == "" {
		return
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	for _, prefix := range []string{"npm error", "npm ERR!"} {
		if rest, ok := strings.CutPrefix(s, prefix); ok {
			rest = strings.TrimSpace(rest)
			if o.npmError == "" && rest != "" && rest != "404" && !startsWithAny(rest, npmBoilerplate) {
				o.npmError = s
			}
			return
		}
	}
	o.tail = append(o.tail, s)
	if len(o.tail) > tailLines {
		o.tail = o.tail[1:]
	}
}

func startsWithAny(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// fail describes a failed step: the command, how it ended, and what its
// output said last (npm's own error first).
func (o *output) fail(step string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s stopped: %s: %w", step, o.command, err)
	}
	var ee *reaper.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("%s failed: %s: %w", step, o.command, err)
	}
	var said []string
	if o.npmError != "" {
		said = append(said, o.npmError)
	}
	said = append(said, o.tail...)
	if len(said) == 0 {
		return fmt.Errorf("%s failed: %s: %w", step, o.command, err)
	}
	return fmt.Errorf("%s failed: %s: %w: %s", step, o.command, err, strings.Join(said, " | "))
}

// lineWriter cuts a stream into lines for the Runner's Log. A carriage
// return ends a line too, so progress output does not pile up.
type lineWriter struct {
	r      *Runner
	out    *output
	buf    []byte
	lastCR bool
}

// maxLine is the longest line kept whole; longer ones are split.
const maxLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		switch {
		case b == '\n' && w.lastCR:
			// The \r of a \r\n already ended the line.
		case b == '\n' || b == '\r':
			w.emit()
		default:
			w.buf = append(w.buf, b)
			if len(w.buf) >= maxLine {
				w.emit()
			}
		}
		w.lastCR = b == '\r'
	}
	return len(p), nil
}

func (w *lineWriter) emit() {
	w.r.writeLine(w.out, string(w.buf))
	w.buf = w.buf[:0]
}

// flush writes a last line that had no newline.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit()
	}
}
