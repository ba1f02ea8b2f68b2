package source

import (
	"fmt"
	"strings"
)

// ValidateBranch is the one check of a branch name the agent tracks or
// deploys: what `git push` sends to a slot's repository, `slotagent deploy
// --ref` and the API. It accepts exactly what `git check-ref-format
// --branch` accepts (git's refname rules for refs/heads/<name>, no leading
// "-", not HEAD), less the names that git would read as another ref when
// they are typed back in a command (`git push slot-a <name>`, `git fetch
// <repo> <name>`): "@" and names ending in "_HEAD" (HEAD and the
// FETCH_HEAD-like pseudo-refs), and names starting with refs/, heads/,
// tags/ or remotes/ (git tries refs/<name> before refs/heads/<name>).
func ValidateBranch(name string) error {
	if reason := branchProblem(name); reason != "" {
		return fmt.Errorf("invalid branch name %q: %s", name, reason)
	}
	return nil
}

// branchProblem says what is wrong with name as a branch name ("" when
// nothing is).
func branchProblem(name string) string {
	switch {
	case name == "":
		return "it is empty"
	case strings.HasPrefix(name, "-"):
		return `it starts with "-" (git would read it as an option)`
	case name == "HEAD" || name == "@" || strings.HasSuffix(name, "_HEAD"):
		return "git reads it as HEAD or one of its pseudo-refs, not as a branch"
	}
	for _, p := range []string{"refs/", "heads/", "tags/", "remotes/"} {
		if strings.HasPrefix(name, p) {
			return fmt.Sprintf("it starts with %q, so git would take it for another ref (give the branch's short name)", p)
		}
	}
	if reason := refnameProblem(name); reason != "" {
		return reason + " (git check-ref-format)"
	}
	return ""
}

// refnameProblem applies git's refname rules (check_refname_format) to
// refs/heads/<name>, one component of name at a time.
func refnameProblem(name string) string {
	if strings.Contains(name, "@{") {
		return `it contains "@{"`
	}
	if strings.Contains(name, "..") {
		return `it contains ".."`
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return "it contains a control character"
		case strings.IndexByte(" ~^:?*[\\", c) >= 0:
			return fmt.Sprintf("it contains %q", string(c))
		}
	}
	if strings.HasSuffix(name, ".") {
		return `it ends with "."`
	}
	for _, comp := range strings.Split(name, "/") {
		switch {
		case comp == "":
			return `it has an empty part (a leading, trailing or double "/")`
		case strings.HasPrefix(comp, "."):
			return `a part of it starts with "."`
		case strings.HasSuffix(comp, ".lock"):
			return `a part of it ends with ".lock"`
		}
	}
	return ""
}
