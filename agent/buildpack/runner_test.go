package buildpack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/reaper"
)

// cacheDir is the npm cache shared by the tests of this package, as the
// agent shares one between deploys.
var cacheDir string

func TestMain(m *testing.M) {
	// The reaper's wait loop must own every child, and orphans (a build's
	// background jobs) must be reaped here.
	if err := reaper.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var err error
	if cacheDir, err = os.MkdirTemp("", "buildpack-cache"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(cacheDir)
	os.Exit(code)
}

// needNpm skips the test when npm is not installed.
func needNpm(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed")
	}
}

// logBuffer is a Log that the test may read while the Runner writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newRunner returns a Runner using the shared cache and its log.
func newRunner(t *testing.T) (*Runner, *logBuffer) {
	t.Helper()
	log := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("runner log:\n%s", log.String())
		}
	})
	return &Runner{Env: os.Environ(), CacheDir: cacheDir, Log: log}, log
}

// newApp copies a fixture app from testdata into a new directory and adds
// a server.js, as a release checkout would look.
func newApp(t *testing.T, fixture string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"package.json", "package-lock.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", fixture, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFiles(t, dir, map[string]string{"server.js": "require('ms');\n"})
	return dir
}

func mustDetect(t *testing.T, dir string, opt Options) Plan {
	t.Helper()
	p, err := Detect(dir, opt)
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	return p
}

func TestInstallNpmCI(t *testing.T) {
	needNpm(t)
	t.Parallel()
	r, log := newRunner(t)
	dir := newApp(t, "app-ms")
	p := mustDetect(t, dir, Options{})
	if p.Install[1] != "ci" {
		t.Fatalf("Install = %q, want npm ci", p.Install)
	}
	reused, err := r.Install(context.Background(), dir, p, "")
	if err != nil {
		t.Fatalf("Install: %v", err)
	}
	if reused {
		t.Error("reused = true without a previous release")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ms", "package.json")); err != nil {
		t.Errorf("ms was not installed: %v", err)
	}
	out := log.String()
	for _, want := range []string{"$ npm ci --no-audit --no-fund --no-progress", "added 1 package"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Unknown env config") {
		t.Errorf("npm complains about the Runner's environment:\n%s", out)
	}
	if got, err := os.ReadFile(filepath.Join(dir, LockHashFile)); err != nil || strings.TrimSpace(string(got)) != p.LockHash {
		t.Errorf("%s = %q, %v; want %q", LockHashFile, got, err, p.LockHash)
	}
	if _, err := os.Stat(filepath.Join(r.CacheDir, "npm", "_cacache")); err != nil {
		t.Errorf("npm did not use the shared cache under CacheDir: %v", err)
	}
}

// installedApp installs the app-ms sample into a new release folder and
// returns it with a second, not yet installed release of the same app.
func installedApp(t *testing.T, r *Runner) (first, second string) {
	t.Helper()
	first = newApp(t, "app-ms")
	if _, err := r.Install(context.Background(), first, mustDetect(t, first, Options{}), ""); err != nil {
		t.Fatalf("first Install: %v", err)
	}
	return first, newApp(t, "app-ms")
}

func TestInstallReusesNodeModules(t *testing.T) {
	needNpm(t)
	t.Parallel()
	ctx := context.Background()
	r, log := newRunner(t)
	first, second := installedApp(t, r)
	p := mustDetect(t, second, Options{})
	start := time.Now()
	reused, err := r.Install(ctx, second, p, first)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("second Install: %v", err)
	}
	if !reused {
		t.Fatalf("reused = false with an unchanged lockfile")
	}
	if took >= time.Second {
		t.Errorf("reuse took %s, want < 1s", took)
	}
	t.Logf("reuse took %s", took)
	if want := "reusing node_modules of " + first + " (lockfile unchanged)"; !strings.Contains(log.String(), want) {
		t.Errorf("log lacks %q", want)
	}

	// Files are hard links; the directory is a directory of its own.
	for _, rel := range []string{"ms/index.js", "ms/package.json"} {
		a, errA := os.Stat(filepath.Join(first, "node_modules", rel))
		b, errB := os.Stat(filepath.Join(second, "node_modules", rel))
		if errA != nil || errB != nil {
			t.Fatalf("stat %s: %v, %v", rel, errA, errB)
		}
		if !os.SameFile(a, b) {
			t.Errorf("node_modules/%s is not a hard link to the previous release's", rel)
		}
	}
	for _, rel := range []string{"node_modules", "node_modules/ms"} {
		a, _ := os.Lstat(filepath.Join(first, rel))
		b, err := os.Lstat(filepath.Join(second, rel))
		if err != nil {
			t.Fatal(err)
		}
		if !b.IsDir() {
			t.Errorf("%s is %s, want a directory", rel, b.Mode())
		}
		if os.SameFile(a, b) {
			t.Errorf("%s is the previous release's directory", rel)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(second, LockHashFile)); strings.TrimSpace(string(got)) != p.LockHash {
		t.Errorf("reused release's %s = %q, want %q", LockHashFile, got, p.LockHash)
	}

	// A lockfile with another dependency means a real install.
	third := newApp(t, "app-ms-isnumber")
	p3 := mustDetect(t, third, Options{})
	if p3.LockHash == p.LockHash {
		t.Fatal("a different lockfile has the same LockHash")
	}
	reused, err = r.Install(ctx, third, p3, second)
	if err != nil {
		t.Fatalf("third Install: %v", err)
	}
	if reused {
		t.Error("reused = true after the lockfile changed")
	}
	if _, err := os.Stat(filepath.Join(third, "node_modules", "is-number", "package.json")); err != nil {
		t.Errorf("is-number was not installed: %v", err)
	}
	if n := strings.Count(log.String(), "$ npm ci"); n != 2 {
		t.Errorf("npm ci ran %d times, want 2 (first and third release)", n)
	}
}

// TestInstallWritesNothingThroughTheTreesLinks: a pushed tree's symlinks
// where Install writes its marker, or its node_modules, must not make it
// write or delete anything they point to: a file outside the release, the
// agent's state file, a file that does not exist yet.
func TestInstallWritesNothingThroughTheTreesLinks(t *testing.T) {
	t.Parallel()
	pkg := map[string]string{"package.json": `{"name":"app","version":"1.0.0"}`, "package-lock.json": `{"name":"app","lockfileVersion":3,"packages":{}}`}
	for _, target := range []string{"victim", "state.json", "new-file"} {
		t.Run(target, func(t *testing.T) {
			outside, dataDir := t.TempDir(), t.TempDir()
			victim, state := filepath.Join(outside, "victim"), filepath.Join(dataDir, "state.json")
			keepDir := filepath.Join(outside, "modules")
			writeFiles(t, outside, map[string]string{"victim": "mine\n", "modules/keep.js": "keep\n"})
			writeFiles(t, dataDir, map[string]string{"state.json": `{"slots":{}}` + "\n"})
			target := map[string]string{"victim": victim, "state.json": state, "new-file": filepath.Join(dataDir, "new-file")}[target]
			r, _ := newRunner(t)
			prev := t.TempDir()
			writeFiles(t, prev, pkg)
			p := mustDetect(t, prev, Options{Start: "node server.js"})
			writeFiles(t, prev, map[string]string{"node_modules/x/index.js": "", LockHashFile: p.LockHash + "\n"})
			dir := t.TempDir()
			writeFiles(t, dir, pkg)
			for name, to := range map[string]string{LockHashFile + ".tmp": target, LockHashFile: victim, "node_modules": keepDir} {
				if err := os.Symlink(to, filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
			reused, err := r.Install(context.Background(), dir, p, prev)
			if err != nil || !reused {
				t.Fatalf("Install: reused %v, %v", reused, err)
			}
			for path, want := range map[string]string{victim: "mine\n", state: `{"slots":{}}` + "\n", filepath.Join(keepDir, "keep.js"): "keep\n"} {
				if got, err := os.ReadFile(path); err != nil || string(got) != want {
					t.Errorf("%s = %q, %v; want %q untouched", path, got, err, want)
				}
			}
			if _, err := os.Lstat(filepath.Join(dataDir, "new-file")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Install created a file through a dangling link: %v", err)
			}
			if got, err := os.ReadFile(filepath.Join(dir, LockHashFile)); err != nil || strings.TrimSpace(string(got)) != p.LockHash {
				t.Errorf("%s = %q, %v; want %q", LockHashFile, got, err, p.LockHash)
			}
			if st, err := os.Lstat(filepath.Join(dir, "node_modules", "x", "index.js")); err != nil || !st.Mode().IsRegular() {
				t.Errorf("node_modules was not rebuilt in the release: %v", err)
			}
		})
	}
}

func TestInstallDoesNotReuseWithoutMarker(t *testing.T) {
	needNpm(t)
	t.Parallel()
	r, log := newRunner(t)
	// A previous release whose install never finished: node_modules but no
	// lock hash. The fresh install here fails fast (a preinstall script), so
	// the test needs no network; what matters is that it was attempted.
	pkg := `{"name":"app","scripts":{"preinstall":"exit 7"}}`
	prev := t.TempDir()
	writeFiles(t, prev, map[string]string{"package.json": pkg, "node_modules/x/index.js": ""})
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"package.json": pkg, "server.js": "", LockHashFile: "forged\n"})
	p := mustDetect(t, dir, Options{})

	reused, err := r.Install(context.Background(), dir, p, prev)
	if reused {
		t.Error("reused node_modules of a release without a lock hash")
	}
	if err == nil {
		t.Fatal("Install succeeded although the preinstall script exits 7")
	}
	var ee *reaper.ExitError
	if !errors.As(err, &ee) || !strings.HasPrefix(err.Error(), "install failed: npm install") || !strings.Contains(err.Error(), "exit code") {
		t.Errorf("err = %v, want an install failure with the exit code", err)
	}
	if _, err := os.Stat(filepath.Join(dir, LockHashFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the app's own %s survived a failed install: %v", LockHashFile, err)
	}
	if strings.Contains(log.String(), "reusing") {
		t.Errorf("log says it reused:\n%s", log)
	}
}

func TestInstallNothingToInstall(t *testing.T) {
	t.Parallel()
	r, log := newRunner(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"package.json": pkgNoDeps, "server.js": "", LockHashFile: "stale\n"})
	p, err := Detect(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	reused, err := r.Install(context.Background(), dir, p, "")
	if err != nil || reused {
		t.Fatalf("Install = %v, %v; want false, nil", reused, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("node_modules exists although nothing was to be installed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, LockHashFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale %s was kept: %v", LockHashFile, err)
	}
	if !strings.Contains(log.String(), "nothing to install") {
		t.Errorf("log = %q", log)
	}
}

func TestInstallOutOfSyncLockfile(t *testing.T) {
	needNpm(t)
	t.Parallel()
	r, log := newRunner(t)
	dir := newApp(t, "app-ms")
	// package.json now wants is-number, which the lockfile lacks.
	data, err := os.ReadFile(filepath.Join("testdata", "app-ms-isnumber", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"package.json": string(data)})
	p := mustDetect(t, dir, Options{})

	reused, err := r.Install(context.Background(), dir, p, "")
	if err != nil || reused {
		t.Fatalf("Install = %v, %v; want a successful fresh install", reused, err)
	}
	out := log.String()
	warning := "warning: package-lock.json is out of sync with package.json: running npm install instead"
	ci := strings.Index(out, "$ npm ci")
	warn := strings.Index(out, warning)
	install := strings.Index(out, "$ npm install")
	if ci < 0 || warn < ci || install < warn {
		t.Errorf("log does not show npm ci, then the warning, then npm install:\n%s", out)
	}
	for _, dep := range []string{"ms", "is-number"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", dep, "package.json")); err != nil {
			t.Errorf("%s was not installed: %v", dep, err)
		}
	}
}

// fakePnpm puts a pnpm first in PATH that records its arguments and store
// setting into dir/pnpm.args, makes node_modules, then runs script.
func fakePnpm(t *testing.T, script string) {
	t.Helper()
	bin := t.TempDir()
	src := "#!/bin/sh\necho \"$* store=$pnpm_config_store_dir ci=$CI\" > pnpm.args\nmkdir -p node_modules/dep\n" + script + "\n"
	if err := os.WriteFile(filepath.Join(bin, "pnpm"), []byte(src), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func TestInstallPnpm(t *testing.T) {
	fakePnpm(t, "echo 'Progress: resolved 1, reused 1'")
	r, log := newRunner(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"package.json": pkgWithStart, "pnpm-lock.yaml": "lockfileVersion: '9.0'\n"})
	p := mustDetect(t, dir, Options{})
	if _, err := r.Install(context.Background(), dir, p, ""); err != nil {
		t.Fatalf("Install: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "pnpm.args"))
	if err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(r.CacheDir, "pnpm-store")
	want := "install --frozen-lockfile --reporter=append-only --store-dir=" + store + " store=" + store + " ci=true\n"
	if string(got) != want {
		t.Errorf("pnpm ran with %q, want %q", got, want)
	}
	if !strings.Contains(log.String(), "Progress: resolved 1, reused 1\n") {
		t.Errorf("log lacks pnpm's output:\n%s", log)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, LockHashFile)); strings.TrimSpace(string(data)) != p.LockHash {
		t.Errorf("%s = %q, want %q", LockHashFile, data, p.LockHash)
	}
}

func TestInstallCancel(t *testing.T) {
	fakePnpm(t, "echo started; exec sleep 30")
	r, log := newRunner(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"package.json": pkgWithStart, "pnpm-lock.yaml": ""})
	p := mustDetect(t, dir, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil && !strings.Contains(log.String(), "started") {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	_, err := r.Install(ctx, dir, p, "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Install stopped %s after start", took)
	}
	if _, err := os.Stat(filepath.Join(dir, LockHashFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a canceled install wrote %s: %v", LockHashFile, err)
	}
}

func TestBuildScript(t *testing.T) {
	needNpm(t)
	t.Parallel()
	r, log := newRunner(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"package.json": `{"scripts":{"build":"node -e \"require('fs').mkdirSync('dist');require('fs').writeFileSync('dist/out.txt','built '+process.env.CI)\"","start":"node dist/out.js"}}`,
	})
	p := mustDetect(t, dir, Options{})
	if p.Build != "npm run build" {
		t.Fatalf("Build = %q", p.Build)
	}
	if err := r.Build(context.Background(), dir, p); err != nil {
		t.Fatalf("Build: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "dist", "out.txt"))
	if err != nil || string(got) != "built true" {
		t.Errorf("dist/out.txt = %q, %v; want %q", got, err, "built true")
	}
	if !strings.Contains(log.String(), "$ npm run build") {
		t.Errorf("log lacks the build command:\n%s", log)
	}
}

func TestBuildEnvironment(t *testing.T) {
	t.Parallel()
	r, log := newRunner(t)
	r.Env = []string{"PATH=" + os.Getenv("PATH"), "FROM_CALLER=yes", "CI=false"}
	err := r.Build(context.Background(), t.TempDir(), Plan{Build: `echo "caller=$FROM_CALLER ci=$CI npm=$npm_config_cache yarn=$YARN_CACHE_FOLDER"`})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("caller=yes ci=true npm=%s yarn=%s", filepath.Join(r.CacheDir, "npm"), filepath.Join(r.CacheDir, "yarn"))
	if !strings.Contains(log.String(), want+"\n") {
		t.Errorf("log = %q, want a line %q", log, want)
	}
}

func TestBuildNothing(t *testing.T) {
	t.Parallel()
	r, log := newRunner(t)
	if err := r.Build(context.Background(), filepath.Join(t.TempDir(), "missing"), Plan{}); err != nil {
		t.Fatalf("Build with no build step: %v", err)
	}
	if log.String() != "" {
		t.Errorf("log = %q, want nothing", log)
	}
}

func TestBuildFailure(t *testing.T) {
	t.Parallel()
	r, log := newRunner(t)
	p := Plan{Build: "echo compiling; echo 'src/a.ts: type error' >&2; exit 3"}
	err := r.Build(context.Background(), t.TempDir(), p)
	if err == nil {
		t.Fatal("a build that exits 3 succeeded")
	}
	var ee *reaper.ExitError
	if !errors.As(err, &ee) || ee.Exit.Code != 3 {
		t.Errorf("err = %v, want an ExitError with code 3", err)
	}
	for _, want := range []string{"build failed", p.Build, "exit code 3", "src/a.ts: type error"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	for _, want := range []string{"compiling\n", "src/a.ts: type error\n"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestBuildFailureMasksOutput: what a failure quotes is masked before it
// is cut, so no piece of a secret escapes at the cut either.
func TestBuildFailureMasksOutput(t *testing.T) {
	t.Parallel()
	r, log := newRunner(t)
	const secret = "sk-live-4f9a1c2e7b3d5f60"
	r.Mask = func(s string) string { return strings.ReplaceAll(s, secret, "********") }
	r.Env = append(r.Env, "API_TOKEN="+secret)
	err := r.Build(context.Background(), t.TempDir(), Plan{Build: `echo "token $API_TOKEN"; printf '%0190d%s end\n' 0 "$API_TOKEN"; exit 1`})
	if err == nil {
		t.Fatal("a build that exits 1 succeeded")
	}
	if !strings.Contains(err.Error(), "token ********") {
		t.Errorf("error %q does not quote the masked output", err)
	}
	for what, text := range map[string]string{"error": err.Error(), "log": log.String()} {
		if strings.Contains(text, secret[:8]) {
			t.Errorf("the %s shows the secret: %q", what, text)
		}
	}
}

func TestBuildCancel(t *testing.T) {
	t.Parallel()
	r, _ := newRunner(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A background job in the build's process group must die too.
	p := Plan{Build: "sleep 30 & echo $! > sleep.pid; wait"}
	pidFile := filepath.Join(dir, "sleep.pid")
	go func() {
		for ctx.Err() == nil {
			if data, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(data), "\n") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	err := r.Build(ctx, dir, p)
	took := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if took > 3*time.Second {
		t.Errorf("Build returned %s after start, want it to stop promptly", took)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the build's sleep (pid %d) still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stampLog records when each line arrived.
type stampLog struct {
	mu    sync.Mutex
	lines []string
	at    []time.Time
}

func (s *stampLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, string(p))
	s.at = append(s.at, time.Now())
	return len(p), nil
}

func TestBuildLogsLinesAsTheyCome(t *testing.T) {
	t.Parallel()
	log := &stampLog{}
	r := &Runner{Log: log}
	err := r.Build(context.Background(), t.TempDir(), Plan{Build: "printf 'first\\nsec'; sleep 0.5; printf 'ond\\n'; sleep 0.2; printf 'err\\n' >&2; printf 'tail'"})
	if err != nil {
		t.Fatal(err)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	want := []string{"==> $ ", "first\n", "second\n", "err\n", "tail\n"}
	if len(log.lines) != len(want) {
		t.Fatalf("lines = %q, want %d lines like %q", log.lines, len(want), want)
	}
	for i, w := range want {
		if !strings.HasPrefix(log.lines[i], w) {
			t.Errorf("line %d = %q, want %q", i, log.lines[i], w)
		}
	}
	if gap := log.at[2].Sub(log.at[1]); gap < 300*time.Millisecond {
		t.Errorf("first line came only %s before the second: not streamed", gap)
	}
}

func TestLineWriter(t *testing.T) {
	var buf bytes.Buffer
	r := &Runner{Log: &buf}
	out := &output{}
	w := &lineWriter{r: r, out: out}
	for _, chunk := range []string{"a\r", "\nb", "c\rd\n", "\n", strings.Repeat("x", maxLine+1)} {
		w.Write([]byte(chunk))
	}
	w.flush()
	want := "a\nbc\nd\n\n" + strings.Repeat("x", maxLine) + "\nx\n"
	if buf.String() != want {
		t.Errorf("log = %q, want %q", buf.String()[:min(80, buf.Len())], want[:80])
	}
}

func TestLinkTree(t *testing.T) {
	t.Parallel()
	oldRoot := t.TempDir()
	newRoot := t.TempDir()
	src := filepath.Join(oldRoot, "node_modules")
	writeFiles(t, oldRoot, map[string]string{
		"node_modules/pkg/index.js":       "module.exports = 1",
		"node_modules/pkg/bin/cli.js":     "#!/usr/bin/env node",
		"node_modules/.cache/babel/x":     "cache",
		"node_modules/ro/file.txt":        "ro",
		"node_modules/.package-lock.json": "{}",
	})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, ".bin"), 0o755))
	must(os.Symlink("../pkg/bin/cli.js", filepath.Join(src, ".bin", "cli")))
	must(os.Symlink(filepath.Join(oldRoot, "node_modules", "pkg"), filepath.Join(src, "abs-inside")))
	must(os.Symlink("/usr/bin/env", filepath.Join(src, "abs-outside")))
	must(os.Chmod(filepath.Join(src, "ro"), 0o555))
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "ro"), 0o755) })

	dst := filepath.Join(newRoot, "node_modules")
	n, err := linkTree(context.Background(), src, dst, oldRoot, newRoot, os.Link)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dst, "ro"), 0o755) })
	if n != 4 {
		t.Errorf("linked %d files, want 4", n)
	}
	for _, rel := range []string{"pkg/index.js", "pkg/bin/cli.js", "ro/file.txt", ".package-lock.json"} {
		a, _ := os.Stat(filepath.Join(src, rel))
		b, err := os.Stat(filepath.Join(dst, rel))
		if err != nil || !os.SameFile(a, b) {
			t.Errorf("%s is not a hard link: %v", rel, err)
		}
	}
	for link, want := range map[string]string{
		".bin/cli":    "../pkg/bin/cli.js",
		"abs-inside":  filepath.Join(newRoot, "node_modules", "pkg"),
		"abs-outside": "/usr/bin/env",
	} {
		if got, err := os.Readlink(filepath.Join(dst, link)); err != nil || got != want {
			t.Errorf("%s -> %q, %v; want %q", link, got, err, want)
		}
	}
	if data, err := os.ReadFile(filepath.Join(dst, ".bin", "cli")); err != nil || string(data) != "#!/usr/bin/env node" {
		t.Errorf(".bin/cli does not resolve inside the new tree: %q, %v", data, err)
	}
	if _, err := os.Lstat(filepath.Join(dst, ".cache")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf(".cache was carried over: %v", err)
	}
	if info, err := os.Stat(filepath.Join(dst, "ro")); err != nil || info.Mode().Perm() != 0o555 {
		t.Errorf("ro mode = %v, %v; want 0555", info.Mode(), err)
	}
	for _, rel := range []string{".", "pkg", "pkg/bin", ".bin"} {
		a, _ := os.Stat(filepath.Join(src, rel))
		b, _ := os.Lstat(filepath.Join(dst, rel))
		if b == nil || !b.IsDir() || os.SameFile(a, b) {
			t.Errorf("%s is not a new directory", rel)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := linkTree(ctx, src, filepath.Join(t.TempDir(), "nm"), oldRoot, newRoot, os.Link); !errors.Is(err, context.Canceled) {
		t.Errorf("linkTree with a canceled ctx = %v", err)
	}
}

// TestReuseCopiesWhenABuildFollows: a build may rewrite node_modules in
// place, so with a build step the reused files are copies, not links.
func TestReuseCopiesWhenABuildFollows(t *testing.T) {
	needNpm(t)
	t.Parallel()
	r, log := newRunner(t)
	first, second := installedApp(t, r)
	p := mustDetect(t, second, Options{Build: "true"})
	reused, err := r.Install(context.Background(), second, p, first)
	if err != nil || !reused {
		t.Fatalf("second Install: reused=%v err=%v", reused, err)
	}
	a, errA := os.Stat(filepath.Join(first, "node_modules", "ms", "index.js"))
	b, errB := os.Stat(filepath.Join(second, "node_modules", "ms", "index.js"))
	if errA != nil || errB != nil || os.SameFile(a, b) || a.Size() != b.Size() || a.Mode() != b.Mode() {
		t.Fatalf("with a build step the file must be a copy: %v %v same=%v", errA, errB, errA == nil && errB == nil && os.SameFile(a, b))
	}
	if !strings.Contains(log.String(), "copied (the build may change them)") {
		t.Errorf("log does not say the files were copied:\n%s", log.String())
	}
}
