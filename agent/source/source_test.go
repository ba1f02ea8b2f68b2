package source

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/agent/reaper"
)

// TestMain runs the reaper's wait loop, as the agent does, and gives git
// an empty HOME so that the user's configuration cannot change the tests.
func TestMain(m *testing.M) {
	if err := reaper.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	home, err := os.MkdirTemp("", "source-test-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for k, v := range map[string]string{
		"HOME": home, "XDG_CONFIG_HOME": filepath.Join(home, ".config"), "GIT_CONFIG_NOSYSTEM": "1",
		"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
		"GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
	} {
		os.Setenv(k, v)
	}
	for _, k := range []string{"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG_GLOBAL"} {
		os.Unsetenv(k)
	}
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}

// git runs git in dir through the reaper and returns its trimmed stdout.
func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := reaper.Output(context.Background(), cmd)
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

func TestValidateRepo(t *testing.T) {
	good := []string{
		"https://github.com/acme/app.git",
		"https://user:token@github.com/acme/app.git",
		"http://127.0.0.1:8080/app.git",
		"ssh://git@github.com/acme/app.git",
		"ssh://git@host:2222/acme/app.git",
		"git://example.com/app.git",
		"file:///srv/repos/app.git",
		"git@github.com:acme/app.git",
		"github.com:acme/app.git",
		"/srv/repos/app.git",
	}
	for _, repo := range good {
		if err := ValidateRepo(repo); err != nil {
			t.Errorf("ValidateRepo(%q) = %v, want nil", repo, err)
		}
	}
	bad := []struct{ repo, want string }{
		{"", "empty"},
		{"--upload-pack=evil", `must not start with "-"`},
		{"-oProxyCommand=evil", `must not start with "-"`},
		{"ext::sh -c touch% /tmp/pwned", `"ext::" remote helper`},
		{"fd::17", `"fd::" remote helper`},
		{"file::x", `remote-helper syntax "file::"`},
		{"https::example.com/app.git", `remote-helper syntax "https::"`},
		{"ftp://x", `scheme "ftp" is not supported`},
		{"gopher://example.com/x", `scheme "gopher" is not supported`},
		{" https://x", "whitespace"},
		{"https://x/a b", "whitespace"},
		{"https://x/a\nb", "whitespace"},
		{"https://x/\x00", "control"},
		{"file://host/srv/app.git", "file:///absolute/path"},
		{"file://relative", "file:///absolute/path"},
		{"https:///app.git", "no host"},
		{"ssh://-oProxyCommand=x/app.git", `host must not start with "-"`},
		{"app.git", "relative path"},
		{"./app", "relative path"},
		{"../app", "relative path"},
		{"git@github.com:", "no path"},
		{"git@-bad:acme/app.git", "scp-like"},
		{"https://user:s3cret@exa mple.com/x", "whitespace"},
	}
	for _, c := range bad {
		err := ValidateRepo(c.repo)
		if err == nil {
			t.Errorf("ValidateRepo(%q) = nil, want an error containing %q", c.repo, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("ValidateRepo(%q) = %q, want it to contain %q", c.repo, err, c.want)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ValidateRepo(%q) error shows the credential: %v", c.repo, err)
		}
	}
}

func TestValidateRef(t *testing.T) {
	t.Parallel()
	for _, ref := range []string{"", "main", "feature/x", "v1.2.3",
		strings.Repeat("a1", 20), strings.Repeat("0f", 32), strings.Repeat("AB", 20)} {
		if err := ValidateRef(ref); err != nil {
			t.Errorf("ValidateRef(%q) = %v, want nil", ref, err)
		}
	}
	for _, ref := range []string{"a..b", "-x", "--upload-pack=x", "x y", "refs/heads/../x", "HEAD~1",
		"HEAD", "x^", "x:y", "a/.b", "x.lock", "@{-1}", "trailing/", "ctl\x01",
		// Names git reads as another ref (issue 25).
		"FETCH_HEAD", "ORIG_HEAD", "@", "refs/heads/main", "tags/v1", "heads/main"} {
		err := ValidateRef(ref)
		if err == nil {
			t.Errorf("ValidateRef(%q) = nil, want an error", ref)
			continue
		}
		if !strings.Contains(err.Error(), "invalid ref") {
			t.Errorf("ValidateRef(%q) = %v, want \"invalid ref\"", ref, err)
		}
	}
}

func TestRedactAndSecrets(t *testing.T) {
	cases := []struct {
		repo, redacted string
		secrets        []string
	}{
		{"https://user:token@host/x", "https://user:***@host/x", []string{"token"}},
		{"https://token@host/x", "https://***@host/x", []string{"token"}},
		{"http://u:p%40ss@host:8080/x.git", "http://u:***@host:8080/x.git", []string{"p%40ss", "p@ss"}},
		{"HTTPS://ghp_abc@github.com/a/b", "HTTPS://***@github.com/a/b", []string{"ghp_abc"}},
		{"ssh://git:pw@host/x", "ssh://git:***@host/x", []string{"pw"}},
		{"ssh://git@host/x", "ssh://git@host/x", nil},
		{"git@github.com:acme/app.git", "git@github.com:acme/app.git", nil},
		{"https://host/x@y", "https://host/x@y", nil},
		{"https://host/x", "https://host/x", nil},
		{"/srv/repos/app.git", "/srv/repos/app.git", nil},
		{"https://user:@host/x", "https://user:@host/x", nil},
	}
	for _, c := range cases {
		if got := Redact(c.repo); got != c.redacted {
			t.Errorf("Redact(%q) = %q, want %q", c.repo, got, c.redacted)
		}
		if got := Secrets(c.repo); !slices.Equal(got, c.secrets) {
			t.Errorf("Secrets(%q) = %q, want %q", c.repo, got, c.secrets)
		}
	}
}

func TestRedactorMasksSecretsSplitAcrossWrites(t *testing.T) {
	var out bytes.Buffer
	r := newRedactor(&out, []string{"tok3n", "sec"})
	for _, chunk := range []string{"a to", "k", "3n b s", "e", "c c tok", "3", "x to"} {
		if n, err := r.Write([]byte(chunk)); err != nil || n != len(chunk) {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
		if strings.Contains(out.String(), "tok3n") || strings.Contains(out.String(), "sec") {
			t.Fatalf("secret written: %q", out.String())
		}
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "a *** b *** c tok3x to"; out.String() != want {
		t.Fatalf("redacted = %q, want %q", out.String(), want)
	}
}
