package buildpack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Language is the kind of app a Plan is for.
type Language string

// The languages of the detection table.
const (
	Node   Language = "node"
	Go     Language = "go"
	Python Language = "python"
	Static Language = "static"
)

// pack is one language of the detection table, in the shape of a Heroku
// buildpack: detect says whether the app's files are of this language, plan
// makes the Plan (start is the explicit or Procfile start command, or "").
type pack struct {
	language Language
	detect   func(dir string) (bool, error)
	plan     func(dir string, opt Options, start string) (Plan, error)
}

// packs is the detection table: the first pack whose detect matches plans
// the app. Static comes last: a root index.html of an app of another
// language is that app's own file.
var packs = []pack{
	{Node, hasFile("package.json"), detectNode},
	{Go, hasFile("go.mod"), detectGo},
	{Python, isPython, detectPython},
	{Static, isStatic, detectStatic},
}

// Detect decides what the app in dir is and how to install, build and
// start it. Each error is a one-line message meant for the user: an empty
// start or build option, a static folder outside the app, an app of no
// known language without a start command, or the language's own refusals
// (several lockfiles, a missing toolchain, an invalid package.json, no way
// to start the app).
func Detect(dir string, opt Options) (Plan, error) {
	if opt.Start != "" && strings.TrimSpace(opt.Start) == "" {
		return Plan{}, errors.New("empty start command")
	}
	if opt.Build != "" && strings.TrimSpace(opt.Build) == "" {
		return Plan{}, errors.New("empty build command")
	}
	if opt.StaticDir != "" {
		if !filepath.IsLocal(opt.StaticDir) {
			return Plan{}, fmt.Errorf("static folder %q must be a relative path inside the app", opt.StaticDir)
		}
		opt.StaticDir = filepath.Clean(opt.StaticDir)
	}
	if info, err := os.Stat(dir); err != nil {
		return Plan{}, fmt.Errorf("app directory: %w", err)
	} else if !info.IsDir() {
		return Plan{}, fmt.Errorf("app directory %s is not a directory", dir)
	}
	start := opt.Start
	if start == "" {
		web, _, err := procfileWeb(dir)
		if err != nil {
			return Plan{}, err
		}
		start = web
	}
	for _, pk := range packs {
		ok, err := pk.detect(dir)
		if err != nil {
			return Plan{}, err
		}
		if ok {
			return pk.plan(dir, opt, start)
		}
	}
	if start == "" && opt.StaticDir != "" {
		return detectStatic(dir, opt, "")
	}
	if start == "" {
		return Plan{}, errors.New("no app found: looked for package.json, go.mod, requirements.txt, pyproject.toml with uv.lock or poetry.lock, index.html and a Procfile with a web: line; or pass --start")
	}
	return Plan{Build: opt.Build, Start: start}, nil
}

// hasFile is a detect that matches when dir has the regular file name.
func hasFile(name string) func(dir string) (bool, error) {
	return func(dir string) (bool, error) { return fileExists(dir, name) }
}

// fileExists reports whether dir/name is a regular file (following a
// symlink); an error other than its absence is returned.
func fileExists(dir, name string) (bool, error) {
	info, err := os.Stat(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check %s: %w", name, err)
	}
	return info.Mode().IsRegular(), nil
}

// Describe is the plan in one line for logs and records: language, install,
// build and how it starts (or which folder it serves).
func (p Plan) Describe() string {
	lang := string(p.Language)
	if lang == "" {
		lang = "other"
	}
	if p.Manager != "" {
		lang += " (" + string(p.Manager) + ")"
	}
	install := orNone(commandLine(p.Install))
	serve := "start: " + p.Start
	if p.Static {
		dir := p.StaticDir
		if dir == "" {
			dir = "the build's output (" + strings.Join(StaticDirs, ", ") + ")"
		}
		serve = "serves: " + dir
	}
	return fmt.Sprintf("language: %s; install: %s; build: %s; %s", lang, install, orNone(p.Build), serve)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
