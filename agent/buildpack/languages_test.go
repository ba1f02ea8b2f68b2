package buildpack

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/reaper"
)

const mainGo = "package main\n\nfunc main() {}\n"

func needGo(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not installed")
	}
}

// brokenVenvPython is a python3 whose ensurepip does not import, as on a
// Debian system without python3-venv: the real interpreter with a stand-in
// ensurepip package first on its path.
func brokenVenvPython(t *testing.T) string {
	t.Helper()
	real, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"shadow/ensurepip/__init__.py": "raise ImportError('ensurepip is disabled here, as without python3-venv')\n",
	})
	script := "#!/bin/sh\nPYTHONPATH=" + filepath.Join(dir, "shadow") + " exec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "python3"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDetectLanguages(t *testing.T) {
	needGo(t)
	testkit.NeedPython(t)
	goBuild := func(name, pkg string) string { return "go build -trimpath -o bin/" + name + " " + pkg }
	noGo := t.TempDir() // a PATH with python3 but neither go nor uv
	python, _ := exec.LookPath("python3")
	if err := os.Symlink(python, filepath.Join(noGo, "python3")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		files   map[string]string
		opt     Options
		path    string // PATH, when not the machine's
		want    Plan   // LockHash is checked separately
		wantErr string
	}{
		{
			name:  "go module with its main at the root",
			files: map[string]string{"go.mod": "module example.com/hello\n", "main.go": mainGo},
			want:  Plan{Language: Go, Install: goInstall, Build: goBuild("hello", "."), Start: "bin/hello", Path: []string{"bin"}},
		},
		{
			name:  "go module v2 with one main under cmd",
			files: map[string]string{"go.mod": "module example.com/svc/v2\n", "lib.go": "package svc\n", "cmd/api/main.go": mainGo, "cmd/api/main_test.go": "package main\n"},
			want:  Plan{Language: Go, Install: goInstall, Build: goBuild("api", "./cmd/api"), Start: "bin/api", Path: []string{"bin"}},
		},
		{
			name:  "go module: the Procfile names the binary",
			files: map[string]string{"go.mod": "module github.com/heroku/go-getting-started\n", "main.go": mainGo, "Procfile": "web: go-getting-started\n"},
			want:  Plan{Language: Go, Install: goInstall, Build: goBuild("go-getting-started", "."), Start: "go-getting-started", Path: []string{"bin"}},
		},
		{
			name:  "go module with vendored modules downloads nothing",
			files: map[string]string{"go.mod": "module example.com/hello\n", "main.go": mainGo, "vendor/modules.txt": ""},
			want:  Plan{Language: Go, Build: goBuild("hello", "."), Start: "bin/hello", Path: []string{"bin"}},
		},
		{
			name:    "go module with two mains and no build option",
			files:   map[string]string{"go.mod": "module example.com/two\n", "cmd/a/main.go": mainGo, "cmd/b/main.go": mainGo},
			wantErr: "found main packages ./cmd/a and ./cmd/b: pass a build option naming one",
		},
		{
			name:  "go module with two mains and a build option",
			files: map[string]string{"go.mod": "module example.com/two\n", "cmd/a/main.go": mainGo, "cmd/b/main.go": mainGo},
			opt:   Options{Build: "go build -o bin/b ./cmd/b", Start: "bin/b"},
			want:  Plan{Language: Go, Install: goInstall, Build: "go build -o bin/b ./cmd/b", Start: "bin/b", Path: []string{"bin"}},
		},
		{
			name:    "go module without a main package",
			files:   map[string]string{"go.mod": "module example.com/lib\n", "lib.go": "package lib\n"},
			wantErr: "go.mod found but no main package",
		},
		{
			name:    "go missing",
			files:   map[string]string{"go.mod": "module example.com/hello\n", "main.go": mainGo},
			path:    noGo,
			wantErr: "go.mod found but go is not installed: ",
		},
		{
			name:  "python with requirements.txt and a Procfile",
			files: map[string]string{"requirements.txt": "slotdemo==1.0\n", "Procfile": "web: python3 app.py\n"},
			want: Plan{Language: Python, Manager: Pip, Lockfile: "requirements.txt", Start: "python3 app.py",
				Install: []string{"pip", "install", "--no-input", "--disable-pip-version-check", "-r", "requirements.txt"}},
		},
		{
			name:    "python without a start command",
			files:   map[string]string{"requirements.txt": "", "app.py": ""},
			wantErr: "requirements.txt found but no start command: add a Procfile with a web: line",
		},
		{
			name:    "python with uv.lock but no uv",
			files:   map[string]string{"pyproject.toml": "[project]\nname = 'x'\n", "uv.lock": "", "Procfile": "web: x\n"},
			path:    noGo,
			wantErr: "uv.lock found but uv is not installed",
		},
		{
			name:    "python3 without venv",
			files:   map[string]string{"requirements.txt": "", "Procfile": "web: python3 app.py\n"},
			path:    "broken-venv",
			wantErr: "requirements.txt found but python3 cannot make a virtualenv (no venv/ensurepip): add python3-venv to the workspace image",
		},
		{
			name:  "pyproject.toml without a lockfile is no python app",
			files: map[string]string{"pyproject.toml": "", "Procfile": "web: python3 -m app\n"},
			want:  Plan{Start: "python3 -m app"},
		},
		{
			name:  "static site at the root",
			files: map[string]string{"index.html": "<h1>hi</h1>"},
			want:  Plan{Language: Static, Static: true, StaticDir: "."},
		},
		{
			name:  "static site in a folder",
			files: map[string]string{"site/index.html": "<h1>hi</h1>"},
			opt:   Options{StaticDir: "site/"},
			want:  Plan{Language: Static, Static: true, StaticDir: "site"},
		},
		{
			name:    "static folder outside the app",
			files:   map[string]string{"index.html": ""},
			opt:     Options{StaticDir: "../etc"},
			wantErr: `static folder "../etc" must be a relative path inside the app`,
		},
		{
			name:  "index.html with a Procfile runs the Procfile",
			files: map[string]string{"index.html": "", "Procfile": "web: ./serve\n"},
			want:  Plan{Start: "./serve"},
		},
		{
			name:  "node app built into a static site",
			files: map[string]string{"package.json": `{"scripts":{"build":"vite build"}}`},
			want:  Plan{Language: Node, Manager: NPM, Build: "npm run build", Static: true},
		},
		{
			name:    "nothing known",
			files:   map[string]string{"README": ""},
			wantErr: "no app found: looked for package.json, go.mod, requirements.txt, pyproject.toml with uv.lock or poetry.lock, index.html and a Procfile with a web: line; or pass --start",
		},
	}
	broken := brokenVenvPython(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			switch tt.path {
			case "":
			case "broken-venv":
				t.Setenv("PATH", broken+string(os.PathListSeparator)+os.Getenv("PATH"))
			default:
				t.Setenv("PATH", tt.path)
			}
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			got, err := Detect(dir, tt.opt)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("Detect = %+v, %v; want one line starting with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			if (got.Language == Python) != (got.LockHash != "") {
				t.Errorf("LockHash = %q for %s", got.LockHash, got.Language)
			}
			got.LockHash = ""
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Detect =\n  %#v\nwant\n  %#v", got, tt.want)
			}
		})
	}
}

// TestGoInstallAndBuild: a module with a dependency from the Go module
// proxy is built into bin/; a second release with the same go.sum
// downloads nothing (the module cache is shared).
func TestGoInstallAndBuild(t *testing.T) {
	needGo(t)
	app := testkit.GoApp(t)
	r, log := newRunner(t)
	r.CacheDir = t.TempDir()
	// The machine's build cache (the standard library compiled already);
	// the module cache is the runner's own, empty at first.
	gocache, err := reaper.Output(t.Context(), exec.Command("go", "env", "GOCACHE"))
	if err != nil {
		t.Fatal(err)
	}
	r.Env = append(os.Environ(), "GOCACHE="+strings.TrimSpace(string(gocache)))
	build := func() string {
		dir := t.TempDir()
		writeFiles(t, dir, app)
		p := mustDetect(t, dir, Options{})
		if _, err := r.Install(context.Background(), dir, p, ""); err != nil {
			t.Fatal(err)
		}
		if err := r.Build(context.Background(), dir, p); err != nil {
			t.Fatal(err)
		}
		if info, err := os.Stat(filepath.Join(dir, "bin", "hello")); err != nil || info.Mode()&0o111 == 0 {
			t.Fatalf("bin/hello: %v", err)
		}
		return dir
	}
	build()
	first := log.String()
	if !strings.Contains(first, "github.com/google/uuid/@v/v1.6.0.zip") {
		t.Fatalf("the first install did not fetch the module from the proxy:\n%s", first)
	}
	build()
	second := strings.TrimPrefix(log.String(), first)
	if strings.Contains(second, "# get ") || strings.Contains(second, ".zip") {
		t.Fatalf("the second install downloaded again:\n%s", second)
	}
}

// TestPythonVenvPerDependencySet: pip installs a wheel from the test's own
// index into a virtualenv; a release with the same requirements.txt reuses
// it, one with other requirements gets its own.
func TestPythonVenvPerDependencySet(t *testing.T) {
	testkit.NeedPython(t)
	index := testkit.PythonIndex(t, map[string]string{
		"slotdemo":  "def greeting():\n    return 'hello from slotdemo'\n",
		"slotextra": "VALUE = 42\n",
	})
	r, log := newRunner(t)
	r.CacheDir = t.TempDir()
	r.Env = append(os.Environ(), "PIP_INDEX_URL="+index)
	install := func(reqs string) (Plan, string, bool) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"requirements.txt": reqs, "Procfile": "web: python3 app.py\n"})
		p := mustDetect(t, dir, Options{})
		reused, err := r.Install(context.Background(), dir, p, "")
		if err != nil {
			t.Fatal(err)
		}
		return p, dir, reused
	}
	p1, dir1, reused := install("slotdemo==1.0\n")
	if reused {
		t.Fatal("the first install reused a virtualenv")
	}
	venv := r.Venv(p1)
	out, err := reaper.Output(t.Context(), exec.Command(filepath.Join(venv, "bin", "python"), "-c", "import slotdemo; print(slotdemo.greeting())"))
	if err != nil || strings.TrimSpace(string(out)) != "hello from slotdemo" {
		t.Fatalf("venv python: %q %v\n%s", out, err, log)
	}
	if got := r.AppPath(dir1, p1); !reflect.DeepEqual(got, []string{filepath.Join(venv, "bin")}) {
		t.Fatalf("AppPath = %q", got)
	}
	p2, _, reused := install("slotdemo==1.0\n")
	if !reused || r.Venv(p2) != venv {
		t.Fatalf("same requirements: reused %v, venv %s (first %s)", reused, r.Venv(p2), venv)
	}
	p3, _, reused := install("slotdemo==1.0\nslotextra==1.0\n")
	if reused || r.Venv(p3) == venv {
		t.Fatalf("other requirements: reused %v, venv %s", reused, r.Venv(p3))
	}
}
