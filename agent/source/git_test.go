package source

import (
	"bytes"
	"context"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
)

// sampleRepo is a bare repository built on the fly and the work tree it
// was pushed from.
type sampleRepo struct {
	bare, work string
	first      string // first commit on main, also tagged v1
	main       string // tip of main
	feature    string // tip of branch feature
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// newSampleRepo makes a bare repository at bareDir (a fresh folder when
// empty) with: main (2 commits: server.js, run.sh executable, a symlink,
// then VERSION), an annotated tag v1 on the first commit and a branch
// feature with one more file.
func newSampleRepo(t testing.TB, bareDir string) *sampleRepo {
	t.Helper()
	if bareDir == "" {
		bareDir = filepath.Join(t.TempDir(), "app.git")
	}
	work := t.TempDir()
	git(t, work, "init", "-q", "-b", "main")
	writeFile(t, filepath.Join(work, "server.js"), "console.log('v1')\n", 0o644)
	writeFile(t, filepath.Join(work, "bin", "run.sh"), "#!/bin/sh\necho run\n", 0o755)
	if err := os.Symlink("../server.js", filepath.Join(work, "bin", "link.js")); err != nil {
		t.Fatal(err)
	}
	git(t, work, "add", "-A")
	git(t, work, "commit", "-q", "-m", "first")
	r := &sampleRepo{bare: bareDir, work: work, first: git(t, work, "rev-parse", "HEAD")}
	git(t, work, "tag", "-a", "-m", "release 1", "v1")
	writeFile(t, filepath.Join(work, "VERSION"), "2\n", 0o644)
	git(t, work, "add", "-A")
	git(t, work, "commit", "-q", "-m", "second")
	r.main = git(t, work, "rev-parse", "HEAD")
	git(t, work, "checkout", "-q", "-b", "feature")
	writeFile(t, filepath.Join(work, "feature.txt"), "feature\n", 0o644)
	git(t, work, "add", "-A")
	git(t, work, "commit", "-q", "-m", "feature")
	r.feature = git(t, work, "rev-parse", "HEAD")
	git(t, work, "checkout", "-q", "main")
	git(t, "", "init", "-q", "--bare", "-b", "main", bareDir)
	git(t, work, "push", "-q", bareDir, "main", "feature", "v1")
	return r
}

// commit adds a file to main in the work tree, pushes it and returns the
// new commit.
func (r *sampleRepo) commit(t testing.TB, name, content string) string {
	t.Helper()
	writeFile(t, filepath.Join(r.work, name), content, 0o644)
	git(t, r.work, "add", "-A")
	git(t, r.work, "commit", "-q", "-m", "add "+name)
	git(t, r.work, "push", "-q", r.bare, "main")
	r.main = git(t, r.work, "rev-parse", "HEAD")
	return r.main
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkRelease checks the files of the sample repository at one commit.
func checkRelease(t testing.TB, dest string, wantVersion, wantFeature bool) {
	t.Helper()
	if got := readFile(t, filepath.Join(dest, "server.js")); got != "console.log('v1')\n" {
		t.Errorf("server.js = %q", got)
	}
	fi, err := os.Stat(filepath.Join(dest, "bin", "run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("bin/run.sh lost its exec bit: %v", fi.Mode())
	}
	if fi, err := os.Stat(filepath.Join(dest, "server.js")); err != nil || fi.Mode().Perm()&0o111 != 0 {
		t.Errorf("server.js mode = %v, %v; want not executable", fi.Mode(), err)
	}
	if target, err := os.Readlink(filepath.Join(dest, "bin", "link.js")); err != nil || target != "../server.js" {
		t.Errorf("bin/link.js = %q, %v; want a symlink to ../server.js", target, err)
	}
	if _, err := os.Lstat(filepath.Join(dest, ".git")); err == nil {
		t.Error("release has a .git")
	}
	_, err = os.Stat(filepath.Join(dest, "VERSION"))
	if wantVersion != (err == nil) {
		t.Errorf("VERSION present = %v, want %v", err == nil, wantVersion)
	}
	_, err = os.Stat(filepath.Join(dest, "feature.txt"))
	if wantFeature != (err == nil) {
		t.Errorf("feature.txt present = %v, want %v", err == nil, wantFeature)
	}
}

func TestFetchAndCheckoutLocal(t *testing.T) {
	t.Parallel()
	r := newSampleRepo(t, "")
	cases := []struct {
		name, ref, want  string
		version, feature bool
	}{
		{"default branch", "", r.main, true, false},
		{"branch", "main", r.main, true, false},
		{"other branch", "feature", r.feature, true, true},
		{"tag", "v1", r.first, false, false},
		{"commit id", r.first, r.first, false, false},
		{"upper-case commit id", strings.ToUpper(r.feature), r.feature, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var log bytes.Buffer
			g := &Git{CacheDir: filepath.Join(t.TempDir(), "cache.git"), Log: &log}
			commit, err := g.Fetch(context.Background(), r.bare, c.ref)
			if err != nil {
				t.Fatalf("Fetch(%q): %v\n%s", c.ref, err, log.String())
			}
			if commit != c.want {
				t.Fatalf("Fetch(%q) = %s, want %s", c.ref, commit, c.want)
			}
			dest := filepath.Join(t.TempDir(), "releases", "r1")
			if err := g.Checkout(context.Background(), commit, dest); err != nil {
				t.Fatalf("Checkout: %v\n%s", err, log.String())
			}
			checkRelease(t, dest, c.version, c.feature)
		})
	}
}

// TestFetchCommitWithoutReachableWants fetches a commit that is no branch
// tip from a server that refuses unadvertised wants (protocol v0 without
// uploadpack.allowReachableSHA1InWant): Fetch falls back to fetching the
// branches and tags.
func TestFetchCommitWithoutReachableWants(t *testing.T) {
	t.Parallel()
	r := newSampleRepo(t, "")
	old := r.main // neither a branch tip nor tagged once main moves on
	r.commit(t, "NEW.txt", "new\n")
	env := append(os.Environ(), "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=protocol.version", "GIT_CONFIG_VALUE_0=0")
	var log bytes.Buffer
	g := &Git{CacheDir: filepath.Join(t.TempDir(), "cache.git"), Env: env, Log: &log}
	commit, err := g.Fetch(context.Background(), r.bare, old)
	if err != nil || commit != old {
		t.Fatalf("Fetch(old) = %s, %v\n%s", commit, err, log.String())
	}
	// The direct request was refused (and kept out of the log): the
	// branches were fetched instead.
	if strings.Contains(log.String(), "unadvertised") || strings.Contains(log.String(), "not our ref") {
		t.Errorf("the refused direct fetch was logged: %q", log.String())
	}
	if got := git(t, "", "--git-dir="+g.CacheDir, "rev-parse", refHeads+"main"); got != r.main {
		t.Errorf("fallback did not fetch the branches: %s = %s, want %s", refHeads+"main", got, r.main)
	}
	if got := git(t, "", "--git-dir="+g.CacheDir, "rev-parse", refCommit); got != old {
		t.Errorf("%s = %s, want %s (the commit must stay referenced)", refCommit, got, old)
	}
	// A commit that is nowhere in the repository.
	_, err = g.Fetch(context.Background(), r.bare, strings.Repeat("ab", 20))
	if err == nil || !strings.Contains(err.Error(), "commit "+strings.Repeat("ab", 20)+" not found in "+r.bare) {
		t.Fatalf("Fetch(unknown commit) = %v", err)
	}
}

// packedObjects returns how many objects the cache holds in packs.
func packedObjects(t testing.TB, gitDir string) int {
	t.Helper()
	for line := range strings.SplitSeq(git(t, "", "--git-dir="+gitDir, "count-objects", "-v"), "\n") {
		if v, ok := strings.CutPrefix(line, "in-pack: "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("count-objects printed no in-pack line")
	return 0
}

func TestRefetchTransfersOnlyNewObjects(t *testing.T) {
	t.Parallel()
	r := newSampleRepo(t, "")
	cache := filepath.Join(t.TempDir(), "cache.git")
	// Keep every fetched pack as it came, so the number of objects each
	// fetch transferred can be counted.
	git(t, "", "init", "-q", "--bare", cache)
	git(t, "", "--git-dir="+cache, "config", "fetch.unpackLimit", "1")
	g := &Git{CacheDir: cache}
	ctx := context.Background()
	first, err := g.Fetch(ctx, r.bare, "main")
	if err != nil || first != r.main {
		t.Fatalf("first Fetch = %s, %v", first, err)
	}
	before := packedObjects(t, cache)
	if before < 8 {
		t.Fatalf("first fetch transferred %d objects, want the whole history (>= 8)", before)
	}
	next := r.commit(t, "NEW.txt", "new\n")
	got, err := g.Fetch(ctx, r.bare, "main")
	if err != nil || got != next {
		t.Fatalf("second Fetch = %s, %v; want %s", got, err, next)
	}
	// A new commit, its root tree and one blob: 3 objects, not the history again.
	if after := packedObjects(t, cache); after-before != 3 {
		t.Fatalf("second fetch transferred %d objects, want 3", after-before)
	}
	// The cache keeps the old commit: a rollback-era checkout still works.
	dest := filepath.Join(t.TempDir(), "old")
	if err := g.Checkout(ctx, first, dest); err != nil {
		t.Fatalf("Checkout(old commit): %v", err)
	}
	checkRelease(t, dest, true, false)
	if _, err := os.Stat(filepath.Join(dest, "NEW.txt")); err == nil {
		t.Error("old release has the new file")
	}
	dest2 := filepath.Join(t.TempDir(), "new")
	if err := g.Checkout(ctx, next, dest2); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dest2, "NEW.txt")); got != "new\n" {
		t.Errorf("NEW.txt = %q", got)
	}
}

func TestFetchErrors(t *testing.T) {
	t.Parallel()
	r := newSampleRepo(t, "")
	ctx := context.Background()
	g := &Git{CacheDir: filepath.Join(t.TempDir(), "cache.git")}
	dest := filepath.Join(t.TempDir(), "rel")

	_, err := g.Fetch(ctx, r.bare, "nope")
	if err == nil || err.Error() != `branch or tag "nope" not found in `+r.bare {
		t.Fatalf("unknown branch: %v", err)
	}
	if _, err := g.Fetch(ctx, r.bare, r.main[:7]); err == nil || !strings.Contains(err.Error(), "must be given in full") {
		t.Fatalf("short commit id: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "missing.git")
	_, err = g.Fetch(ctx, missing, "main")
	if err == nil || !strings.Contains(err.Error(), "fetch "+missing+": ") || !strings.Contains(err.Error(), "does not appear to be a git repository") {
		t.Fatalf("missing repo: %v", err)
	}
	if _, err := g.Fetch(ctx, "ext::sh -c touch% /tmp/pwned", ""); err == nil || !strings.Contains(err.Error(), "ext::") {
		t.Fatalf("ext:: repo: %v", err)
	}
	if _, err := g.Fetch(ctx, r.bare, "a..b"); err == nil || !strings.Contains(err.Error(), "invalid ref") {
		t.Fatalf("bad ref: %v", err)
	}
	// An empty repository has no default branch.
	empty := filepath.Join(t.TempDir(), "empty.git")
	git(t, "", "init", "-q", "--bare", empty)
	if _, err := g.Fetch(ctx, empty, ""); err == nil || !strings.Contains(err.Error(), "has no default branch") {
		t.Fatalf("empty repo: %v", err)
	}

	// Nothing failed above was checked out, and a commit that was never
	// fetched cannot be.
	if err := g.Checkout(ctx, r.feature, dest); err == nil || !strings.Contains(err.Error(), "not in the git cache") {
		t.Fatalf("Checkout(unfetched commit) = %v", err)
	}
	if _, err := os.Lstat(dest); err == nil {
		t.Fatal("failed Checkout left dest behind")
	}
	if err := g.Checkout(ctx, "--output=/tmp/x", dest); err == nil || !strings.Contains(err.Error(), "invalid commit") {
		t.Fatalf("Checkout(option-like commit) = %v", err)
	}
	// A destination with files in it is refused and left as it was.
	commit, err := g.Fetch(ctx, r.bare, "")
	if err != nil {
		t.Fatal(err)
	}
	full := t.TempDir()
	writeFile(t, filepath.Join(full, "keep.txt"), "mine\n", 0o644)
	if err := g.Checkout(ctx, commit, full); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Checkout into a non-empty folder = %v", err)
	}
	entries, _ := os.ReadDir(full)
	if len(entries) != 1 || readFile(t, filepath.Join(full, "keep.txt")) != "mine\n" {
		t.Fatalf("non-empty dest changed: %v", entries)
	}
	// An existing empty folder is fine.
	empty2 := t.TempDir()
	if err := g.Checkout(ctx, commit, empty2); err != nil {
		t.Fatal(err)
	}
	checkRelease(t, empty2, true, false)
}

func TestFetchCanceled(t *testing.T) {
	t.Parallel()
	r := newSampleRepo(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g := &Git{CacheDir: filepath.Join(t.TempDir(), "cache.git")}
	if _, err := g.Fetch(ctx, r.bare, "main"); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("Fetch with a canceled context = %v", err)
	}
}

// grepTree reports the files under dir that contain s.
func grepTree(t testing.TB, dir, s string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(s)) {
			hits = append(hits, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

func TestFetchOverSmartHTTPWithToken(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	r := newSampleRepo(t, filepath.Join(root, "app.git"))
	const token = "ghp_s3cretT0ken"
	const wrong = "ghp_wr0ngT0ken"
	base := testkit.GitHTTPServer(t, root, testkit.WithBasicAuth("deployer", token))
	withCreds := func(user, pass string) string {
		return strings.Replace(base, "http://", "http://"+user+":"+pass+"@", 1) + "/app.git"
	}
	ctx := context.Background()
	var log bytes.Buffer
	g := &Git{CacheDir: filepath.Join(t.TempDir(), "cache.git"), Log: &log}

	repo := withCreds("deployer", token)
	commit, err := g.Fetch(ctx, repo, "")
	if err != nil || commit != r.main {
		t.Fatalf("Fetch over HTTP = %s, %v\n%s", commit, err, log.String())
	}
	// A commit that is no branch tip, asked for by id.
	commit, err = g.Fetch(ctx, repo, r.first)
	if err != nil || commit != r.first {
		t.Fatalf("Fetch(first) over HTTP = %s, %v\n%s", commit, err, log.String())
	}
	got, err := g.Fetch(ctx, repo, "feature")
	if err != nil || got != r.feature {
		t.Fatalf("Fetch(feature) over HTTP = %s, %v\n%s", got, err, log.String())
	}
	dest := filepath.Join(t.TempDir(), "rel")
	if err := g.Checkout(ctx, got, dest); err != nil {
		t.Fatal(err)
	}
	checkRelease(t, dest, true, true)

	// git prints the URL it was given in its trace: one without credentials.
	log.Reset()
	traced := &Git{CacheDir: g.CacheDir, Log: &log,
		Env: append(os.Environ(), "GIT_TRACE=1", "GIT_TRACE_CURL=1", "GIT_TRACE_PACKET="+filepath.Join(t.TempDir(), "packets"))}
	if _, err := traced.Fetch(ctx, repo, "main"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "fetch --no-tags --no-write-fetch-head --quiet -- "+base+"/app.git") || strings.Contains(log.String(), token) {
		t.Errorf("traced fetch log does not mask the token:\n%s", log.String())
	}
	if strings.Contains(log.String(), "Authorization") {
		t.Errorf("GIT_TRACE_CURL was passed to git:\n%s", log.String())
	}

	// Failures: unknown branch, wrong token, token as user name, no credentials.
	_, err = g.Fetch(ctx, repo, "nope")
	if want := `branch or tag "nope" not found in ` + Redact(repo); err == nil || err.Error() != want {
		t.Fatalf("unknown branch over HTTP = %v, want %q", err, want)
	}
	var errs []string
	for _, bad := range []string{withCreds("deployer", wrong), strings.Replace(base, "http://", "http://"+wrong+"@", 1) + "/app.git"} {
		_, err := g.Fetch(ctx, bad, "main")
		if err == nil {
			t.Fatalf("Fetch with a wrong token succeeded")
		}
		// user:wrong-token is refused; a lone token as user name makes git
		// ask for a password, which it must not do.
		if !strings.Contains(err.Error(), "fetch "+Redact(bad)+": ") ||
			!strings.Contains(err.Error(), "Authentication failed") && !strings.Contains(err.Error(), "could not read Password") {
			t.Errorf("wrong token: %v", err)
		}
		errs = append(errs, err.Error())
	}
	_, err = g.Fetch(ctx, base+"/app.git", "main")
	if err == nil || !strings.Contains(err.Error(), "could not read Username") {
		t.Errorf("no credentials: %v", err)
	}
	errs = append(errs, log.String())
	for _, s := range errs {
		for _, secret := range []string{token, wrong} {
			if strings.Contains(s, secret) {
				t.Errorf("secret %q shown in %q", secret, s)
			}
		}
	}
	if hits := grepTree(t, g.CacheDir, token); len(hits) > 0 {
		t.Errorf("the token is stored in the cache: %v", hits)
	}
}

// TestNoCredentialInAnyCommandLine: while a fetch with a token in its URL
// runs (against a slow server), no process's command line holds the token
// (git and git-remote-http get the URL without it; a credential helper
// hands it over through the environment).
func TestNoCredentialInAnyCommandLine(t *testing.T) {
	root := t.TempDir()
	newSampleRepo(t, filepath.Join(root, "app.git"))
	const token = "ghp_cmdl1ne/T0k%en" // percent-encoded in the URL
	const wrong = "ghp_wr0ngT0ken"
	base := testkit.GitHTTPServer(t, root, testkit.WithBasicAuth("deployer", token), testkit.WithDelay(300*time.Millisecond))
	secrets := []string{token, url.PathEscape(token), wrong}
	// A fetch (deploys) and Heads (a slot following its branch).
	ops := map[string]func(repo string) error{
		"fetch": func(repo string) error {
			g := &Git{CacheDir: filepath.Join(t.TempDir(), "cache.git")}
			_, err := g.Fetch(context.Background(), repo, "main")
			return err
		},
		"heads": func(repo string) error {
			_, _, err := Heads(context.Background(), nil, repo)
			return err
		},
	}
	for _, op := range []string{"fetch", "heads"} {
		for _, pass := range []string{url.PathEscape(token), wrong} {
			repo := strings.Replace(base, "http://", "http://deployer:"+pass+"@", 1) + "/app.git"
			done := make(chan error, 1)
			go func() { done <- ops[op](repo) }()
			seen := 0
			var leaked []string
			for running := true; running; {
				select {
				case err := <-done:
					running = false
					if pass == wrong && err == nil {
						t.Fatal("fetch with a wrong token succeeded")
					} else if pass != wrong && err != nil {
						t.Fatalf("fetch: %v", err)
					}
				default:
				}
				procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
				for _, p := range procs {
					b, err := os.ReadFile(p)
					if err != nil {
						continue
					}
					line := strings.ReplaceAll(string(b), "\x00", " ")
					if strings.Contains(line, strings.TrimPrefix(base, "http://")+"/app.git") {
						seen++
					}
					for _, secret := range secrets {
						if strings.Contains(line, secret) {
							leaked = append(leaked, line)
						}
					}
				}
			}
			if seen == 0 {
				t.Fatal("no git process was seen while the fetch ran: the test proves nothing")
			}
			t.Logf("%s, password %s: git's command lines read %d times while it ran", op, Redact(repo), seen)
			if len(leaked) > 0 {
				t.Errorf("%s: a token is in command lines: %q", op, leaked)
			}
		}
	}
}

// TestHeads: the branches and HEAD of a repository over smart HTTP with a
// token; a wrong token and a repository that moved away are errors that
// do not quote the token.
func TestHeads(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	r := newSampleRepo(t, filepath.Join(root, "app.git"))
	const token = "ghp_h3adsT0ken"
	base := testkit.GitHTTPServer(t, root, testkit.WithBasicAuth("deployer", token))
	repo := strings.Replace(base, "http://", "http://deployer:"+token+"@", 1) + "/app.git"
	heads, head, err := Heads(context.Background(), nil, repo)
	if err != nil || head != r.main || heads["main"] != r.main || heads["feature"] != r.feature || len(heads) != 2 {
		t.Fatalf("Heads = %v, %s, %v; want main %s, feature %s", heads, head, err, r.main, r.feature)
	}
	for _, bad := range []string{
		strings.Replace(repo, token, "ghp_wr0ng", 1),
		strings.Replace(repo, "/app.git", "/moved.git", 1),
		filepath.Join(root, "moved.git"),
	} {
		_, _, err := Heads(context.Background(), nil, bad)
		if err == nil || strings.Contains(err.Error(), "ghp_") || !strings.Contains(err.Error(), "list the branches of") {
			t.Errorf("Heads(%s) = %v, want an error without the token", Redact(bad), err)
		}
	}
	if _, _, err := Heads(context.Background(), nil, "-uhack"); err == nil {
		t.Error("Heads accepted a repository starting with -")
	}
}

// TestSubject: the first line of a commit's message, with a terminal's
// escape sequences and invalid UTF-8 made harmless; an empty message is
// "", a commit that is not in the cache or not a full id an error.
func TestSubject(t *testing.T) {
	t.Parallel()
	r := newSampleRepo(t, "")
	g := &Git{CacheDir: filepath.Join(t.TempDir(), "cache.git")}
	commitWith := func(msg string) string {
		writeFile(t, filepath.Join(r.work, "n"), msg, 0o644)
		git(t, r.work, "add", "-A")
		git(t, r.work, "commit", "-q", "--allow-empty-message", "--cleanup=verbatim", "-m", msg)
		git(t, r.work, "push", "-q", r.bare, "main")
		sha, err := g.Fetch(context.Background(), r.bare, "main")
		if err != nil {
			t.Fatal(err)
		}
		return sha
	}
	for _, c := range []struct{ msg, want string }{
		{"Fix the login\n\nLonger body\nlines", "Fix the login"},
		{"  spaced\tsubject  \n", "spaced subject"},
		{"red \x1b[31malert\x1b[0m", "red \uFFFD[31malert\uFFFD[0m"},
		{"", ""},
	} {
		sha := commitWith(c.msg)
		if got, err := g.Subject(context.Background(), sha); err != nil || got != c.want {
			t.Errorf("Subject of a commit with message %q = %q, %v; want %q", c.msg, got, err, c.want)
		}
	}
	// Bytes that are no UTF-8 (git itself may convert them): valid UTF-8.
	if got, err := g.Subject(context.Background(), commitWith("latin \xe9t\xe9")); err != nil || !utf8.ValidString(got) || !strings.HasPrefix(got, "latin ") {
		t.Errorf("Subject of a Latin-1 message = %q, %v; want valid UTF-8", got, err)
	}
	if _, err := g.Subject(context.Background(), strings.Repeat("ab", 20)); err == nil {
		t.Error("Subject of a commit not in the cache: no error")
	}
	if _, err := g.Subject(context.Background(), "HEAD"); err == nil {
		t.Error("Subject of HEAD (not a full id): no error")
	}
}
