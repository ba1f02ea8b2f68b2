package buildpack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// StaticDirs are the folders a build's output is looked for in, in order,
// when a static site names none.
var StaticDirs = []string{"dist", "build", "public", "out"}

// isStatic matches a site: an index.html at the app's root.
func isStatic(dir string) (bool, error) { return fileExists(dir, "index.html") }

// detectStatic plans a static site: served from the app's root (or the
// folder in opt), with the build option run first when given. A start
// command makes it an app like any other.
func detectStatic(dir string, opt Options, start string) (Plan, error) {
	if start != "" {
		return Plan{Build: opt.Build, Start: start}, nil
	}
	p := Plan{Language: Static, Build: opt.Build, Static: true, StaticDir: opt.StaticDir}
	if p.StaticDir == "" && p.Build == "" {
		p.StaticDir = "."
	}
	return p, nil
}

// StaticRoot is the folder a static plan serves, once the build ran: an
// absolute path inside dir, with no symlink on the way out of it. It fails
// with one line when the folder is missing or leaves the app.
func StaticRoot(dir string, p Plan) (string, error) {
	if !p.Static {
		return "", errors.New("not a static site")
	}
	names := []string{p.StaticDir}
	if p.StaticDir == "" {
		names = StaticDirs
	}
	for _, name := range names {
		path := filepath.Join(dir, name)
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			continue
		}
		base, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return "", fmt.Errorf("static site: %w", err)
		}
		if rel, err := filepath.Rel(base, real); err != nil || !(rel == "." || filepath.IsLocal(rel)) {
			return "", fmt.Errorf("static folder %s leads outside the app", name)
		}
		if info, err := os.Stat(real); err == nil && info.IsDir() {
			return real, nil
		}
	}
	if p.StaticDir != "" {
		return "", fmt.Errorf("static folder %s does not exist after the build", p.StaticDir)
	}
	return "", fmt.Errorf("no start command, and the build made none of %s to serve: add a start script, a Procfile with a web: line, or pass --start or --static-dir", strings.Join(StaticDirs, ", "))
}
