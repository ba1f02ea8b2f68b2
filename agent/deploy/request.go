package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Request asks for a deploy into a slot, from a git repository or from a
// folder of the workspace.
type Request struct {
	Repo  string            `json:"repo,omitempty"`
	Ref   string            `json:"ref,omitempty"`
	Dir   string            `json:"dir,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	Build string            `json:"build,omitempty"`
	Start string            `json:"start,omitempty"`
	// Origin is where the request came from ("panel" or "cli"), set by
	// the admin API, never read from the body; it goes to the record.
	Origin string `json:"-"`
	// StaticDir is the folder of a static site, relative to the app, for
	// an app with no start command (default: the root's index.html, or the
	// build's output).
	StaticDir string `json:"static_dir,omitempty"`
	// SPA makes a static site answer a path that names no file with its
	// index.html (a single-page app's client-side routes).
	SPA bool `json:"spa,omitempty"`
	// push is set for a deploy from `git push` (see Deployer.Push).
	push *pushSource
}

// ErrInvalid marks a request that was refused before anything changed.
var ErrInvalid = errors.New("invalid request")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedEnv are set by the agent for every app.
var reservedEnv = map[string]bool{"PORT": true, "SLOT_NAME": true, "SLOT_URL": true}

// ValidateEnvName checks an environment variable name.
func ValidateEnvName(name string) error {
	if !envName.MatchString(name) {
		return invalid("env name %q is not valid: use letters, digits and _, not starting with a digit", name)
	}
	if reservedEnv[name] {
		return invalid("env name %s is set by the agent and cannot be overridden", name)
	}
	return nil
}

// ValidateEnv checks every name and value of env, in a stable order: a
// value may hold anything but a NUL byte, which no process environment can
// carry (every later start of the app would fail on it).
func ValidateEnv(env map[string]string) error {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if err := ValidateEnvName(k); err != nil {
			return err
		}
		if strings.IndexByte(env[k], 0) >= 0 {
			return invalid("env value of %s contains a NUL byte, which an environment cannot hold", k)
		}
	}
	return nil
}

// check validates what can be checked without the network.
func (r *Request) check() error {
	switch {
	case r.Repo == "" && r.Dir == "":
		return invalid("give a repository (repo) or a folder (dir) to deploy")
	case r.Repo != "" && r.Dir != "":
		return invalid("give either a repository or a folder, not both")
	case r.Dir != "" && r.Ref != "":
		return invalid("a ref goes with a repository, not with a folder")
	}
	if r.Dir != "" {
		if !filepath.IsAbs(r.Dir) {
			return invalid("folder %q must be an absolute path", r.Dir)
		}
		st, err := os.Stat(r.Dir)
		if err != nil {
			return invalid("folder %s does not exist", r.Dir)
		}
		if !st.IsDir() {
			return invalid("%s is not a folder", r.Dir)
		}
	}
	if r.Start != "" && strings.TrimSpace(r.Start) == "" {
		return invalid("empty start command")
	}
	return ValidateEnv(r.Env)
}
