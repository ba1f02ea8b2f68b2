package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/coder-slots/coder-slots/agent/reaper"
)

// Refs in the cache that keep fetched commits reachable, so that the next
// fetch negotiates from them and transfers only what changed.
const (
	refDefault = "refs/deploy/HEAD"        // the remote's default branch
	refNamed   = "refs/deploy/ref/"        // + the escaped branch or tag name
	refCommit  = "refs/deploy/commit"      // the last commit fetched by id
	refHeads   = "refs/deploy/heads/"      // all branches (fallback for commit ids)
	refTags    = "refs/deploy/tags/"       // all tags (fallback for commit ids)
	allowProto = "file:git:http:https:ssh" // GIT_ALLOW_PROTOCOL
)

// locationVars are environment variables that would make git work on
// another repository or index than the one it is given; they are dropped
// from the environment passed to git, along with those the package sets.
var locationVars = []string{
	"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
	"GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE",
	"GIT_PREFIX", "GIT_SHALLOW_FILE", "GIT_GRAFT_FILE", "GIT_IMPLICIT_WORK_TREE",
	"GIT_QUARANTINE_PATH", "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM",
	"GIT_TERMINAL_PROMPT", "GIT_ALLOW_PROTOCOL", "GIT_OPTIONAL_LOCKS", "LC_ALL",
}

// gitEnv returns base (the agent's environment when nil) without
// locationVars, plus the settings every git command of this package gets
// and extra.
func gitEnv(base []string, extra ...string) []string {
	if base == nil {
		base = os.Environ()
	}
	env := make([]string, 0, len(base)+4+len(extra))
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		if slices.Contains(locationVars, k) || !traceToStderr(k, v) {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"GIT_TRACE_REDACT=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ALLOW_PROTOCOL="+allowProto,
		// git's messages are parsed (e.g. "couldn't find remote ref").
		"LC_ALL=C",
	)
	return append(env, extra...)
}

// traceToStderr reports whether the variable k=v may be passed to git as
// far as tracing goes: GIT_TRACE to stderr passes (its output goes through
// the redacting log writer); tracing to a file, where credentials would
// escape the redaction, and curl and packet traces (which show
// Authorization headers base64-encoded) are dropped.
func traceToStderr(k, v string) bool {
	switch {
	case k == "GIT_TRACE":
		return v == "1" || v == "2" || v == "true"
	case strings.HasPrefix(k, "GIT_TRACE"), k == "GIT_CURL_VERBOSE", k == "GIT_REDACT_COOKIES":
		return false
	}
	return true
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

// runGit runs git with args through the reaper. git's stderr goes to log
// (nil discards) with secrets masked; it returns stdout and the (masked)
// stderr. A failure is an error carrying git's most telling stderr line.
func runGit(ctx context.Context, env []string, dir string, log io.Writer, secrets []string, args ...string) (stdout, stderr string, err error) {
	full := append([]string{"-c", "protocol.ext.allow=never", "-c", "protocol.fd.allow=never"}, args...)
	cmd := exec.Command("git", full...)
	cmd.Env = env
	cmd.Dir = dir
	var out bytes.Buffer
	tail := &tailBuffer{max: 64 << 10}
	red := newRedactor(log, secrets)
	err = reaper.RunTo(ctx, cmd, &out, io.MultiWriter(red, tail))
	_ = red.Flush()
	stderr = redactString(tail.buf.String(), secrets)
	if err != nil {
		var ee *reaper.ExitError
		if errors.As(err, &ee) {
			msg := "git " + ee.Exit.String()
			if m := gitMessage(stderr); m != "" {
				msg = m + " (" + msg + ")"
			}
			return out.String(), stderr, &gitError{msg: msg, exit: ee}
		}
		if ctx.Err() != nil {
			return out.String(), stderr, ctx.Err()
		}
		return out.String(), stderr, fmt.Errorf("run git: %w", err)
	}
	return out.String(), stderr, nil
}

// gitError is a git command that failed; it unwraps to the
// *reaper.ExitError.
type gitError struct {
	msg  string
	exit *reaper.ExitError
}

func (e *gitError) Error() string { return e.msg }
func (e *gitError) Unwrap() error { return e.exit }

// gitMessage picks the line of git's stderr that says what went wrong: the
// first "fatal:" line, else the last "error:" line, else the last line.
func gitMessage(stderr string) string {
	var lastErr, last string
	for line := range strings.SplitSeq(strings.ReplaceAll(stderr, "\r", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if m, ok := strings.CutPrefix(line, "fatal: "); ok {
			return m
		}
		if m, ok := strings.CutPrefix(line, "error: "); ok {
			lastErr = m
		}
		last = line
	}
	if lastErr != "" {
		return lastErr
	}
	return last
}

// Git fetches repositories into a slot's bare cache repository and checks
// commits out of it. A Git must not be used by two goroutines at once on
// the same CacheDir (the agent deploys one release per slot at a time).
type Git struct {
	// CacheDir is the slot's bare cache repository, created with
	// `git init --bare` on first use. It persists across deploys so that a
	// re-deploy fetches only what changed.
	CacheDir string
	// Env is the environment for git (the agent's own when nil): the
	// workspace's HOME (for its gitconfig and credential helpers),
	// SSH_AUTH_SOCK, GIT_SSH_COMMAND and so on. The package adds
	// GIT_TERMINAL_PROMPT=0, GIT_ALLOW_PROTOCOL=file:git:http:https:ssh,
	// GIT_TRACE_REDACT=1 and LC_ALL=C, and drops variables such as GIT_DIR
	// that would point git elsewhere and traces that would write
	// credentials where they cannot be masked (GIT_TRACE to a file,
	// GIT_TRACE_CURL, ...).
	Env []string
	// Log receives git's messages, with the repository's credentials
	// masked as "***". Nil discards them.
	Log io.Writer
	// Quarantine, when set, is the object directory of a push that git is
	// still receiving into CacheDir (GIT_QUARANTINE_PATH of its
	// pre-receive hook): Checkout then reads objects from it before
	// CacheDir's own, as the hook itself does. Such a Git must only check
	// out, never fetch.
	Quarantine string
}

func (g *Git) gitDir() string { return "--git-dir=" + g.CacheDir }

// readEnv is the environment of commands that read objects: gitEnv plus
// the quarantine's object directories and extra.
func (g *Git) readEnv(extra ...string) []string {
	if g.Quarantine != "" {
		extra = append([]string{"GIT_OBJECT_DIRECTORY=" + g.Quarantine,
			"GIT_ALTERNATE_OBJECT_DIRECTORIES=" + filepath.Join(g.CacheDir, "objects")}, extra...)
	}
	return gitEnv(g.Env, extra...)
}

// ensureCache creates the bare cache repository when it does not exist.
func (g *Git) ensureCache(ctx context.Context) error {
	if g.CacheDir == "" {
		return errors.New("git cache: no cache directory configured")
	}
	if _, err := os.Stat(filepath.Join(g.CacheDir, "HEAD")); err == nil {
		return nil
	}
	if err := os.MkdirAll(g.CacheDir, 0o755); err != nil {
		return fmt.Errorf("create git cache: %w", err)
	}
	if _, _, err := runGit(ctx, gitEnv(g.Env), "", nil, nil, "init", "--bare", "--quiet", g.CacheDir); err != nil {
		return fmt.Errorf("create git cache %s: %w", g.CacheDir, err)
	}
	return nil
}

// fetchResult tells a failed fetch that did not find the ref apart from
// other failures.
type fetchResult struct {
	notFound bool
}

// fetch runs `git fetch --no-tags <repo> <refspecs>` into the cache, with
// --prune for wildcard refspecs. (--prune is left out for a single ref: it
// has nothing to prune there, and with an unqualified source such as
// "main:refs/deploy/ref/main" git would delete the destination as stale
// and then fail to update it.)
func (g *Git) fetch(ctx context.Context, log io.Writer, repo string, refspecs ...string) (fetchResult, error) {
	remote, creds := withoutCredentials(repo)
	args := append(creds.args(), g.gitDir(), "fetch", "--no-tags", "--no-write-fetch-head", "--quiet")
	if slices.ContainsFunc(refspecs, func(r string) bool { return strings.Contains(r, "*") }) {
		args = append(args, "--prune")
	}
	args = append(append(args, "--", remote), refspecs...)
	_, stderr, err := runGit(ctx, gitEnv(g.Env, creds.env()...), "", log, Secrets(repo), args...)
	if err != nil {
		if ctx.Err() != nil {
			return fetchResult{}, fmt.Errorf("fetch %s: %w", Redact(repo), ctx.Err())
		}
		return fetchResult{notFound: strings.Contains(stderr, "couldn't find remote ref")},
			fmt.Errorf("fetch %s: %w", Redact(repo), err)
	}
	return fetchResult{}, nil
}

// HasCommit reports whether the cache (or the quarantine) holds the
// commit sha.
func (g *Git) HasCommit(ctx context.Context, sha string) (bool, error) {
	if !isCommitID(sha) {
		return false, fmt.Errorf("look up commit %q: not a full commit id", sha)
	}
	return g.yesNo(ctx, "look up commit "+sha, anyExit, "cat-file", "-e", sha+"^{commit}")
}

// anyExit, as yesNo's no, takes every non-zero exit for "no".
const anyExit = -1

// yesNo runs a git command that answers yes by exiting 0 and no by
// exiting with code no (anyExit: any code); what names it in errors.
func (g *Git) yesNo(ctx context.Context, what string, no int, args ...string) (bool, error) {
	_, _, err := runGit(ctx, g.readEnv(), "", nil, nil, append([]string{g.gitDir()}, args...)...)
	var ee *reaper.ExitError
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() != nil:
		return false, ctx.Err()
	case errors.As(err, &ee) && (no == anyExit || ee.Exit.Code == no):
		return false, nil
	default:
		return false, fmt.Errorf("%s: %w", what, err)
	}
}

// resolve returns the full id of the commit rev points to in the cache.
func (g *Git) resolve(ctx context.Context, rev string) (string, error) {
	out, _, err := runGit(ctx, g.readEnv(), "", nil, nil, g.gitDir(), "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", err
	}
	sha := strings.TrimSpace(out)
	if !isCommitID(sha) {
		return "", fmt.Errorf("git rev-parse printed %q, not a commit id", sha)
	}
	return sha, nil
}

// Fetch brings the commit that ref names in repo into the cache and returns
// its full id. ref is a branch or tag name, a full commit id, or empty for
// the remote's default branch. Only what the cache lacks is transferred:
// fetched refs are kept under refs/deploy/ in the cache and git negotiates
// from them.
func (g *Git) Fetch(ctx context.Context, repo, ref string) (string, error) {
	if err := ValidateRepo(repo); err != nil {
		return "", err
	}
	if err := ValidateRef(ref); err != nil {
		return "", err
	}
	if err := g.ensureCache(ctx); err != nil {
		return "", err
	}
	shown := Redact(repo)
	switch {
	case ref == "":
		res, err := g.fetch(ctx, g.Log, repo, "+HEAD:"+refDefault)
		if res.notFound {
			return "", fmt.Errorf("%s has no default branch (is the repository empty?)", shown)
		}
		if err != nil {
			return "", err
		}
		sha, err := g.resolve(ctx, refDefault)
		if err != nil {
			return "", fmt.Errorf("the default branch of %s does not point to a commit: %w", shown, err)
		}
		return sha, nil
	case isCommitID(ref):
		return g.fetchCommit(ctx, repo, strings.ToLower(ref))
	default:
		dst := refNamed + url.PathEscape(ref)
		res, err := g.fetch(ctx, g.Log, repo, "+"+ref+":"+dst)
		if res.notFound {
			hint := ""
			if len(ref) >= 4 && len(ref) < 40 && strings.Trim(strings.ToLower(ref), "0123456789abcdef") == "" {
				hint = " (commit ids must be given in full, 40 hex digits)"
			}
			return "", fmt.Errorf("branch or tag %q not found in %s%s", ref, shown, hint)
		}
		if err != nil {
			return "", err
		}
		sha, err := g.resolve(ctx, dst)
		if err != nil {
			return "", fmt.Errorf("%q in %s does not point to a commit: %w", ref, shown, err)
		}
		return sha, nil
	}
}

// fetchCommit fetches the commit sha: asked for directly, which servers
// allow for reachable commits with protocol v2 or
// uploadpack.allowReachableSHA1InWant, else by fetching every branch and
// tag and looking for it there.
func (g *Git) fetchCommit(ctx context.Context, repo, sha string) (string, error) {
	if ok, err := g.HasCommit(ctx, sha); err != nil || ok {
		return sha, err
	}
	// A refusal is expected from some servers: keep it out of the log.
	_, direct := g.fetch(ctx, nil, repo, "+"+sha+":"+refCommit)
	if ctx.Err() != nil {
		return "", direct
	}
	if direct == nil {
		if ok, err := g.HasCommit(ctx, sha); err != nil || ok {
			return sha, err
		}
	}
	if _, err := g.fetch(ctx, g.Log, repo, "+refs/heads/*:"+refHeads+"*", "+refs/tags/*:"+refTags+"*"); err != nil {
		return "", err
	}
	ok, err := g.HasCommit(ctx, sha)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("commit %s not found in %s", sha, Redact(repo))
	}
	if _, _, err := runGit(ctx, gitEnv(g.Env), "", nil, nil, g.gitDir(), "update-ref", refCommit, sha); err != nil {
		return "", fmt.Errorf("keep commit %s in the git cache: %w", sha, err)
	}
	return sha, nil
}

// Checkout writes the files of commit, which must be in the cache (see
// Fetch), into dest, without a .git folder. dest is created when missing
// and must otherwise be an empty folder. The files are written by git
// itself (read-tree -u with a throwaway index), so file modes, symlinks
// and .gitattributes conversions are those of a clone. On failure what was
// written is removed.
func (g *Git) Checkout(ctx context.Context, commit, dest string) (err error) {
	if commit == "" || strings.HasPrefix(commit, "-") {
		return fmt.Errorf("check out: invalid commit %q", commit)
	}
	if g.CacheDir == "" {
		return errors.New("check out: no git cache directory configured")
	}
	sha, err := g.resolve(ctx, commit)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("check out %s: %w", commit, ctx.Err())
		}
		return fmt.Errorf("check out: commit %s is not in the git cache (fetch it first): %w", commit, err)
	}
	absDest, err := filepath.Abs(dest)
	if err != nil {
		return fmt.Errorf("check out: %w", err)
	}
	cleanup, err := prepareDest(absDest)
	if err != nil {
		return fmt.Errorf("check out: %w", err)
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	tmp, err := os.MkdirTemp("", "slot-checkout-")
	if err != nil {
		return fmt.Errorf("check out: %w", err)
	}
	defer os.RemoveAll(tmp)
	env := g.readEnv("GIT_INDEX_FILE=" + filepath.Join(tmp, "index"))
	if _, _, err := runGit(ctx, env, "", g.Log, nil, g.gitDir(), "--work-tree="+absDest, "read-tree", "--reset", "-u", sha); err != nil {
		return fmt.Errorf("check out %s into %s: %w", sha, dest, err)
	}
	return nil
}

// Subject returns the first line of the message of commit (a full id, in
// the cache or the quarantine), tabs made spaces, invalid UTF-8 and other
// control characters (a terminal's escape sequences) replaced by U+FFFD;
// "" for an empty message.
func (g *Git) Subject(ctx context.Context, commit string) (string, error) {
	if !isCommitID(commit) {
		return "", fmt.Errorf("read commit message: %q is not a full commit id", commit)
	}
	out, _, err := runGit(ctx, g.readEnv(), "", nil, nil, g.gitDir(), "cat-file", "commit", commit)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("read the message of commit %s: %w", commit, err)
	}
	// A commit object is its headers, a blank line, then the message.
	_, msg, _ := strings.Cut(out, "\n\n")
	line, _, _ := strings.Cut(msg, "\n")
	line = strings.ToValidUTF8(strings.TrimSpace(line), "\uFFFD")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return ' '
		case unicode.IsControl(r):
			return '\uFFFD'
		}
		return r
	}, line), nil
}

// prepareDest makes dest an empty folder: it creates it when missing and
// refuses anything else than an empty folder. cleanup undoes what was
// written into dest since.
func prepareDest(dest string) (cleanup func(), err error) {
	fi, err := os.Lstat(dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dest, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", dest, err)
		}
		return func() { _ = os.RemoveAll(dest) }, nil
	case err != nil:
		return nil, err
	case !fi.IsDir():
		return nil, fmt.Errorf("destination %s exists and is not a folder", dest)
	}
	entries, err := os.ReadDir(dest)
	if err != nil {
		return nil, err
	}
	if len(entries) > 0 {
		return nil, fmt.Errorf("destination %s is not empty", dest)
	}
	return func() {
		entries, _ := os.ReadDir(dest)
		for _, e := range entries {
			_ = os.RemoveAll(filepath.Join(dest, e.Name()))
		}
	}, nil
}

// Branch returns the commit refs/heads/<name> points to in the cache
// repository, "" when there is no such branch.
func (g *Git) Branch(ctx context.Context, name string) (string, error) {
	if err := ValidateBranch(name); err != nil {
		return "", err
	}
	ref := "refs/heads/" + name
	out, _, err := runGit(ctx, gitEnv(g.Env), "", nil, nil, g.gitDir(), "for-each-ref", "--format=%(objectname) %(refname)", ref)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("read branch %s: %w", name, err)
	}
	// The pattern also matches the refs below ref (refs/heads/main/x).
	for _, line := range strings.Split(out, "\n") {
		if sha, r, ok := strings.Cut(line, " "); ok && r == ref {
			return sha, nil
		}
	}
	return "", nil
}

// IsAncestor reports whether commit old is new or one of its ancestors,
// reading the quarantine's objects too; both must be full commit ids.
func (g *Git) IsAncestor(ctx context.Context, old, new string) (bool, error) {
	if !isCommitID(old) || !isCommitID(new) {
		return false, fmt.Errorf("compare commits: %q and %q must be full commit ids", old, new)
	}
	return g.yesNo(ctx, "compare commits "+old+" and "+new, 1, "merge-base", "--is-ancestor", "--end-of-options", old, new)
}

// SetHead points the repository's HEAD at branch (the branch a slot's
// push repository tracks) and returns the branch it named before. No hook
// runs: it is the agent's own change.
func (g *Git) SetHead(ctx context.Context, branch string) (string, error) {
	if err := ValidateBranch(branch); err != nil {
		return "", err
	}
	env := gitEnv(g.Env)
	out, _, err := runGit(ctx, env, "", nil, nil, g.gitDir(), "symbolic-ref", "--quiet", "--short", "HEAD")
	prev := strings.TrimSpace(out)
	if err != nil {
		prev = ""
	}
	if prev == branch {
		return prev, nil
	}
	if _, _, err := runGit(ctx, env, "", nil, nil, "-c", "core.hooksPath=/dev/null", g.gitDir(), "symbolic-ref", "HEAD", "refs/heads/"+branch); err != nil {
		return prev, fmt.Errorf("point HEAD at %s: %w", branch, err)
	}
	return prev, nil
}
