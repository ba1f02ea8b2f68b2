package source

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/agent/reaper"
)

// gitAcceptsBranch asks the real `git check-ref-format --branch`, outside
// any repository.
func gitAcceptsBranch(t *testing.T, dir, name string) bool {
	t.Helper()
	cmd := exec.Command("git", "check-ref-format", "--branch", name)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CEILING_DIRECTORIES="+dir)
	_, err := reaper.Output(context.Background(), cmd)
	var ee *reaper.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return err == nil
}

func TestValidateBranchIsGitsCheckLessWhatShadowsOtherRefs(t *testing.T) {
	t.Parallel()
	shadows := []string{"HEAD", "@", "FETCH_HEAD", "ORIG_HEAD", "MERGE_HEAD", "x_HEAD",
		"refs/heads/main", "refs/x", "heads/main", "tags/v1", "remotes/origin/main"}
	corpus := []string{"main", "feature/x-1.2_b", "v1.2.3", "a./b", "ab@", "x@y", "HEAD/x", "x/HEAD",
		"head", "Head_head", "a/-b", "é", "naïve/日本", "x$(reboot)", "it's", "a`id`", "a;b", "a|b", "a&b",
		"a\"b", "a'b", "a<b", "a>b", "a#b", "a%b", "a!b", "a=b", "a,b", "a+b", "a{b}", "a(b)", "a@b{",
		"", "-x", "-", "--upload-pack=x", "a..b", ".a", "a/.b", "a.lock", "a.lock/b", "a/b.lock/c", "a.lock.b",
		"a/", "/a", "a//b", "a.", "a/b.", ".", "..", "a/..", "a b", "a\tb", "a\nb", "a\x01", "a\x7f",
		"a~1", "a^", "a:b", "a?", "a*", "a[", "a]", "a\\b", "a@{b", "@{-1}", "x@{", "@@", "a/@",
		"refsx", "tagsy", "heads", "remote/x", "HEADS", "FETCH_HEAD/x", "a_HEADx"}
	corpus = append(corpus, shadows...)
	dir := t.TempDir()
	for _, name := range corpus {
		err := ValidateBranch(name)
		git := gitAcceptsBranch(t, dir, name)
		shadow := false
		for _, s := range shadows {
			shadow = shadow || s == name
		}
		switch {
		case shadow && err == nil:
			t.Errorf("%q shadows another ref but was accepted", name)
		case !shadow && (err == nil) != git:
			t.Errorf("%q: ValidateBranch says %v, git check-ref-format --branch accepts: %v", name, err, git)
		case err != nil && !strings.HasPrefix(err.Error(), "invalid branch name "):
			t.Errorf("%q: %v", name, err)
		case err != nil && strings.ContainsAny(err.Error(), "\n\x01\x7f"):
			t.Errorf("%q: the error carries a raw control character: %q", name, err)
		}
	}
}
