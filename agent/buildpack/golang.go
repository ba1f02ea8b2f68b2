package buildpack

import (
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"

	"github.com/coder-slots/coder-slots/agent/shell"
)

// goInstall fetches the module's dependencies into the shared module cache.
var goInstall = []string{"go", "mod", "download", "-x"}

// detectGo plans a Go module: its dependencies downloaded into the module
// cache the releases share, `go build` of its main package (the module's
// root, or ./cmd/<name> when that is the only one) into bin/, named as Go
// names it (the module's last path element, or <name>), and bin/ first on
// the app's PATH. It starts with start, else the built binary. A module
// with several main packages and no build option is refused, as is a
// workspace without go.
func detectGo(dir string, opt Options, start string) (Plan, error) {
	p := Plan{Language: Go, Path: []string{"bin"}, Build: opt.Build}
	if _, err := exec.LookPath("go"); err != nil {
		return p, fmt.Errorf("go.mod found but go is not installed: build the workspace image with --build-arg WITH_GO=1 (make image WITH_GO=1) or put go on PATH")
	}
	data, err := readAppFile(dir, "go.mod")
	if err != nil {
		return p, err
	}
	modPath := modfile.ModulePath(data)
	if modPath == "" {
		return p, fmt.Errorf("go.mod has no module line")
	}
	if !isDir(filepath.Join(dir, "vendor")) {
		p.Install = goInstall
	}
	p.Start = start
	if opt.Build != "" {
		if start == "" {
			return p, fmt.Errorf("go.mod with a build option: give a start command too (a Procfile with a web: line, or --start)")
		}
		return p, nil
	}
	pkg, name, err := goMain(dir, modPath)
	if err != nil {
		return p, err
	}
	p.Build = "go build -trimpath -o bin/" + shell.Quote(name) + " " + shell.Quote(pkg)
	if p.Start == "" {
		p.Start = "bin/" + shell.Quote(name)
	}
	return p, nil
}

// binName is what a Go binary may be called here: no path, no shell.
var binName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// goMain finds the package to build and the binary's name: the module root
// when it is package main, else the one main package under cmd/.
func goMain(dir, modPath string) (pkg, name string, err error) {
	if isMain(dir) {
		prefix, _, ok := module.SplitPathVersion(modPath)
		if !ok {
			prefix = modPath
		}
		name = path.Base(prefix)
		if !binName.MatchString(name) {
			return "", "", fmt.Errorf("module path %q gives no usable binary name: pass a build option", modPath)
		}
		return ".", name, nil
	}
	entries, err := os.ReadDir(filepath.Join(dir, "cmd"))
	if err != nil && !os.IsNotExist(err) {
		return "", "", fmt.Errorf("read cmd: %w", err)
	}
	var mains []string
	for _, e := range entries {
		if e.IsDir() && binName.MatchString(e.Name()) && isMain(filepath.Join(dir, "cmd", e.Name())) {
			mains = append(mains, e.Name())
		}
	}
	switch len(mains) {
	case 0:
		return "", "", fmt.Errorf("go.mod found but no main package at the module root or in cmd/<name>: pass a build option (e.g. go build -o bin/app ./path/to/main)")
	case 1:
		return "./cmd/" + mains[0], mains[0], nil
	default:
		for i, m := range mains {
			mains[i] = "./cmd/" + m
		}
		return "", "", fmt.Errorf("found main packages %s: pass a build option naming one (e.g. go build -o bin/%s %s) and a start command",
			joinAnd(mains), path.Base(mains[0]), mains[0])
	}
}

// isMain reports whether the Go files of dir (tests aside) are package main.
func isMain(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.PackageClauseOnly)
		if err == nil && f.Name.Name == "main" {
			return true
		}
	}
	return false
}

func isDir(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}
