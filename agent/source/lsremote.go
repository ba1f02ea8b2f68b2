package source

import (
	"context"
	"fmt"
	"strings"
)

// Heads lists the branches of repo with `git ls-remote --heads` and the
// commit the remote's HEAD (its default branch) points to, through the
// same credentials path as Fetch: a token in repo's URL reaches git by
// the environment, never by its command line. Nothing is written
// anywhere. heads maps a branch's short name to its commit id; head is ""
// when the remote does not advertise HEAD.
func Heads(ctx context.Context, env []string, repo string) (heads map[string]string, head string, err error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, "", err
	}
	remote, creds := withoutCredentials(repo)
	args := append(creds.args(), "ls-remote", "--", remote, "HEAD", "refs/heads/*")
	out, _, err := runGit(ctx, gitEnv(env, creds.env()...), "", nil, Secrets(repo), args...)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", fmt.Errorf("list the branches of %s: %w", Redact(repo), ctx.Err())
		}
		return nil, "", fmt.Errorf("list the branches of %s: %w", Redact(repo), err)
	}
	heads = map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		sha, ref, ok := strings.Cut(strings.TrimSpace(line), "\t")
		if !ok || !isCommitID(sha) {
			continue
		}
		if ref == "HEAD" {
			head = sha
		} else if name, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
			heads[name] = sha
		}
	}
	return heads, head, nil
}
