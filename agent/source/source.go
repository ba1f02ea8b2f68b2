// Package source fetches an app's code for a release: from a git repository
// into a per-slot bare cache, or from a folder of the workspace.
//
// Every child process is run through the agent's reaper (see
// agent/reaper), with argument lists only, never through a shell.
// Repository URLs may carry credentials (https://user:token@host/...): they
// are never written to a log or an error by this package except through
// Redact, and git's own output is passed through a writer that masks
// Secrets.
package source

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// allowedSchemes are the URL schemes a repository may use; the same list is
// given to git as GIT_ALLOW_PROTOCOL.
var allowedSchemes = []string{"https", "http", "ssh", "git", "file"}

// scpLike matches git's scp-like syntax, [user@]host:path, with a host that
// cannot be taken for an option.
var scpLike = regexp.MustCompile(`^(?:[A-Za-z0-9._~+-]+@)?(?:[A-Za-z0-9_][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\]):(.*)$`)

// ValidateRepo reports whether repo is a repository address the agent may
// fetch from: an https://, http://, ssh:// or git:// URL, a file:///
// URL, an scp-like [user@]host:path, or an absolute local path. It refuses
// what could make git run commands or read options: a leading "-", git's
// remote-helper syntax ("ext::", "fd::", "file::" and any
// "<transport>::"), other schemes, relative paths, whitespace and control
// characters. Errors show the address redacted.
func ValidateRepo(repo string) error {
	shown := fmt.Sprintf("%q", Redact(repo))
	if repo == "" {
		return errors.New("repository URL is empty")
	}
	if strings.HasPrefix(repo, "-") {
		return fmt.Errorf("repository %s must not start with \"-\" (git would read it as an option)", shown)
	}
	if helper, ok := remoteHelper(repo); ok {
		switch helper {
		case "ext", "fd":
			return fmt.Errorf("repository %s uses git's %q remote helper, which can run commands; use an https://, ssh:// or git:// URL or a path", shown, helper+"::")
		default:
			return fmt.Errorf("repository %s uses git's remote-helper syntax %q, which is not allowed; use an https://, ssh:// or git:// URL or a path", shown, helper+"::")
		}
	}
	if i := strings.IndexFunc(repo, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return fmt.Errorf("repository %s contains whitespace or a control character", shown)
	}
	if i := strings.Index(repo, "://"); i >= 0 {
		return validateURL(repo, repo[:i], shown)
	}
	if strings.HasPrefix(repo, "/") {
		return nil
	}
	// git takes "host:path" for scp-like ssh when the first ":" comes
	// before any "/".
	if c := strings.IndexByte(repo, ':'); c >= 0 && !strings.Contains(repo[:c], "/") {
		m := scpLike.FindStringSubmatch(repo)
		if m == nil {
			return fmt.Errorf("repository %s is not a valid scp-like address (user@host:path)", shown)
		}
		if m[1] == "" {
			return fmt.Errorf("repository %s has no path after the host", shown)
		}
		return nil
	}
	return fmt.Errorf("repository %s is a relative path; use an absolute path or a URL (https://, ssh://, git://, file:///)", shown)
}

// remoteHelper reports whether repo uses git's "<transport>::<address>"
// syntax and names the transport, with git's own rule for the name.
func remoteHelper(repo string) (string, bool) {
	i := 0
	for i < len(repo) {
		c := repo[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != '+' && c != '-' && c != '.')) {
			break
		}
		i++
	}
	if i > 0 && strings.HasPrefix(repo[i:], "::") {
		return repo[:i], true
	}
	return "", false
}

func validateURL(repo, scheme, shown string) error {
	s := strings.ToLower(scheme)
	if !slices.Contains(allowedSchemes, s) {
		return fmt.Errorf("repository %s: scheme %q is not supported (use https, http, ssh, git or file)", shown, scheme)
	}
	u, err := url.Parse(repo)
	if err != nil {
		// url.Parse's error repeats the raw URL; keep it out.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("repository %s is not a valid URL: %v", shown, err)
	}
	if s == "file" {
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return fmt.Errorf("repository %s: file URLs must look like file:///absolute/path", shown)
		}
		return nil
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("repository %s has no host", shown)
	}
	if strings.HasPrefix(host, "-") {
		return fmt.Errorf("repository %s: host must not start with \"-\"", shown)
	}
	return nil
}

// isCommitID reports whether ref is a full SHA-1 or SHA-256 commit id.
func isCommitID(ref string) bool {
	if len(ref) != 40 && len(ref) != 64 {
		return false
	}
	for _, c := range ref {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// ValidateRef reports whether ref may be deployed: empty (the remote's
// default branch), a full 40- or 64-hex commit id, or a branch or tag
// name that ValidateBranch accepts.
func ValidateRef(ref string) error {
	if ref == "" || isCommitID(ref) {
		return nil
	}
	if reason := branchProblem(ref); reason != "" {
		return fmt.Errorf("invalid ref %q: %s", ref, reason)
	}
	return nil
}

// userinfo splits a URL-style repo into what comes before its userinfo,
// the userinfo and the rest (starting with "@"). ok is false when repo has
// no userinfo.
func userinfo(repo string) (scheme, before, info, rest string, ok bool) {
	i := strings.Index(repo, "://")
	if i < 0 {
		return "", "", "", "", false
	}
	start := i + 3
	end := len(repo)
	if j := strings.IndexAny(repo[start:], "/?#"); j >= 0 {
		end = start + j
	}
	at := strings.LastIndexByte(repo[start:end], '@')
	if at < 0 {
		return "", "", "", "", false
	}
	return strings.ToLower(repo[:i]), repo[:start], repo[start : start+at], repo[start+at:], true
}

// credential returns the secret part of repo's userinfo and the prefix
// (user name and ":") kept in front of it when redacted.
func credential(repo string) (keep, secret string) {
	scheme, _, info, _, ok := userinfo(repo)
	if !ok {
		return "", ""
	}
	if user, pass, found := strings.Cut(info, ":"); found {
		return user + ":", pass
	}
	if scheme == "http" || scheme == "https" {
		// A lone user name over HTTP is a token (https://token@host/...).
		return "", info
	}
	return "", ""
}

// Redact returns repo with the credential in its URL replaced by "***":
// https://user:token@host/x becomes https://user:***@host/x and
// https://token@host/x becomes https://***@host/x. Anything else is returned
// unchanged. Use it for every log line, record and API answer that shows a
// repository.
func Redact(repo string) string {
	keep, secret := credential(repo)
	if secret == "" {
		return repo
	}
	_, before, _, rest, _ := userinfo(repo)
	return before + keep + "***" + rest
}

// Secrets returns the credentials carried by repo (the password or token
// of its URL, as written and percent-decoded), to mask in logs. It is
// empty when repo carries none.
func Secrets(repo string) []string {
	_, secret := credential(repo)
	if secret == "" {
		return nil
	}
	out := []string{secret}
	if dec, err := url.PathUnescape(secret); err == nil && dec != secret && dec != "" {
		out = append(out, dec)
	}
	return out
}

// redactor is a writer that replaces every secret in what goes through it
// with "***", even when a secret is split across writes. Flush writes
// what it held back.
type redactor struct {
	w   io.Writer
	rep *strings.Replacer
	sec []string
	buf []byte
}

func newRedactor(w io.Writer, secrets []string) *redactor {
	if w == nil {
		w = io.Discard
	}
	var sec []string
	for _, s := range secrets {
		if s != "" && !slices.Contains(sec, s) {
			sec = append(sec, s)
		}
	}
	// Longer secrets first, so a secret that contains another is masked whole.
	slices.SortFunc(sec, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(sec))
	for _, s := range sec {
		pairs = append(pairs, s, "***")
	}
	return &redactor{w: w, rep: strings.NewReplacer(pairs...), sec: sec}
}

func (r *redactor) Write(p []byte) (int, error) {
	if len(r.sec) == 0 {
		if _, err := r.w.Write(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	r.buf = append(r.buf, p...)
	s := r.rep.Replace(string(r.buf))
	// Hold back the longest tail that could be the start of a secret.
	hold := 0
	for _, sec := range r.sec {
		for n := min(len(sec)-1, len(s)); n > hold; n-- {
			if strings.HasSuffix(s, sec[:n]) {
				hold = n
				break
			}
		}
	}
	out := s[:len(s)-hold]
	r.buf = append(r.buf[:0], s[len(s)-hold:]...)
	if out != "" {
		if _, err := io.WriteString(r.w, out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes what was held back as a possible start of a secret.
func (r *redactor) Flush() error {
	if len(r.buf) == 0 {
		return nil
	}
	_, err := r.w.Write(r.buf)
	r.buf = r.buf[:0]
	return err
}

// redactString masks secrets in s.
func redactString(s string, secrets []string) string {
	if len(secrets) == 0 {
		return s
	}
	return newRedactor(nil, secrets).rep.Replace(s)
}
