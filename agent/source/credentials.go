package source

import (
	"net/url"
	"strings"
)

// gitCredentials are the user name and password (or token) that an HTTP(S)
// repository URL carried. git gets them from a credential helper that
// reads them from its environment, never from its command line, where
// every process on the machine could read them in /proc/*/cmdline for as
// long as the fetch runs (git passes the URL on to git-remote-https too).
type gitCredentials struct {
	user, password string
	set            bool
}

// The variables that hand the credentials to the helper.
const (
	credUserEnv = "SLOTAGENT_GIT_USERNAME"
	credPassEnv = "SLOTAGENT_GIT_PASSWORD"
)

// credentialHelper answers git's "get" with the credentials in its
// environment (printf is the shell's builtin: no process of its own);
// "store" and "erase" are ignored, so the credentials are never saved.
const credentialHelper = `!f() { test "$1" = get || exit 0; printf 'username=%s\npassword=%s\n' "$` + credUserEnv + `" "$` + credPassEnv + `"; }; f`

// withoutCredentials splits an http(s) repository URL that carries
// credentials into the URL without them and the credentials
// (percent-decoded, as git decodes them). Anything else is returned as it
// is, with no credentials.
func withoutCredentials(repo string) (string, gitCredentials) {
	scheme, before, info, rest, ok := userinfo(repo)
	if !ok || scheme != "http" && scheme != "https" {
		return repo, gitCredentials{}
	}
	user, pass, _ := strings.Cut(info, ":")
	return before + strings.TrimPrefix(rest, "@"), gitCredentials{user: unescape(user), password: unescape(pass), set: true}
}

func unescape(s string) string {
	if dec, err := url.PathUnescape(s); err == nil {
		return dec
	}
	return s
}

// args are git's options that make the helper its only credential helper
// (the workspace's own, such as a credential store, are reset for this
// command: they must neither answer for the URL's credentials nor save
// them).
func (c gitCredentials) args() []string {
	if !c.set {
		return nil
	}
	return []string{"-c", "credential.helper=", "-c", "credential.helper=" + credentialHelper}
}

// env hands the credentials to the helper.
func (c gitCredentials) env() []string {
	if !c.set {
		return nil
	}
	return []string{credUserEnv + "=" + c.user, credPassEnv + "=" + c.password}
}
