// Package buildpack detects what kind of app a folder holds and how to
// install, build and start it, and runs the install and build steps.
//
// Detection is one table (packs), one entry per language in the shape of a
// Heroku buildpack: detect (do the app's files say it is mine?) and plan
// (how to install, build and start it). The first entry whose detect
// matches plans the app: Node.js (package.json), Go (go.mod), Python
// (requirements.txt, or pyproject.toml with uv.lock or poetry.lock), then a
// static site (index.html at the root). How an app starts is the explicit
// start option, else the Procfile's web: line, else the language's default;
// an app with neither a language nor a start command is refused. A static
// site has no process: the agent serves its folder itself.
//
// Detect returns a Plan; a Runner then installs the dependencies (reusing
// the previous release's node_modules through hard links, or a Python
// virtualenv kept per dependency set, when the lockfile did not change; Go
// modules and build results from caches shared between releases) and runs
// the build, streaming all output to a log.
//
// Every child process is started through package reaper, since the agent's
// wait loop reaps all children.
package buildpack

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/coder-slots/coder-slots/agent/shell"
)

// Manager is a Node.js package manager.
type Manager string

// The package managers Detect can choose.
const (
	NPM  Manager = "npm"
	Yarn Manager = "yarn"
	PNPM Manager = "pnpm"
)

// Plan says how to install, build and start one app directory.
type Plan struct {
	// Language is the kind of app Detect found; "" for an app of no known
	// language that starts with an explicit or Procfile command.
	Language Language
	// Manager is the package manager, chosen by the lockfile (npm when there
	// is none). It is "" when the app has no package.json, which Detect only
	// accepts together with an explicit start command.
	Manager Manager
	// Lockfile is the name of the lockfile in the app directory:
	// "package-lock.json", "npm-shrinkwrap.json", "yarn.lock",
	// "pnpm-lock.yaml", or "" when there is none.
	Lockfile string
	// Install is the argument list of the install command, e.g.
	// {"npm", "ci", "--no-audit", "--no-fund", "--no-progress"}. It is nil
	// when there is nothing to install: no package.json, or a package.json
	// that declares no dependencies, no workspaces and no install scripts and
	// has no lockfile.
	Install []string
	// Build is the command line of the build step, run with sh -c: the
	// explicit build option, else "<manager> run build" when package.json has
	// a build script, else "".
	Build string
	// Start is the command line the app starts with (for sh -c): the explicit
	// start option, else the Procfile's web: line, else "<manager> start"
	// when package.json has a start script, else "node <main>" when
	// package.json's main names an existing file, else "node server.js" or
	// "node index.js" when that file exists.
	Start string
	// Static is set for a site served by the agent from a folder (no
	// process): Start is then "". StaticDir is that folder, relative to the
	// app; "" means the build's output, the first of StaticDirs that exists
	// once the build ran (see StaticRoot).
	Static    bool
	StaticDir string
	// Path lists folders, relative to the app, that go first on the app's
	// PATH (Go: "bin", so a Procfile may name the built binary).
	Path []string
	// LockHash identifies the installed dependencies: a hex SHA-256 over the
	// manager, the lockfile, package.json and the package manager's config
	// files (.npmrc, .yarnrc, .yarnrc.yml, pnpm-workspace.yaml,
	// .pnpmfile.cjs) when present. Two releases with equal LockHash can share
	// the same node_modules contents. It is "" when Install is nil.
	LockHash string
}

// Options are explicit overrides for Detect; an empty field means detect.
type Options struct {
	// Build is a build command line, run with sh -c exactly as given.
	Build string
	// Start is a start command line, run with sh -c exactly as given.
	Start string
	// StaticDir is the folder of a static site, relative to the app, for an
	// app with no start command.
	StaticDir string
}

// lockfiles lists the lockfiles Detect knows, in the order they are reported.
// npm-shrinkwrap.json wins over package-lock.json, as it does in npm.
var lockfiles = []struct {
	name    string
	manager Manager
}{
	{"package-lock.json", NPM},
	{"npm-shrinkwrap.json", NPM},
	{"yarn.lock", Yarn},
	{"pnpm-lock.yaml", PNPM},
}

// hashedConfig lists the files besides the lockfile and package.json whose
// contents change what an install produces.
var hashedConfig = []string{".npmrc", ".yarnrc", ".yarnrc.yml", "pnpm-workspace.yaml", ".pnpmfile.cjs"}

// packageJSON holds the fields of package.json that Detect reads.
type packageJSON struct {
	Main                 string            `json:"main"`
	Scripts              map[string]string `json:"scripts"`
	Dependencies         json.RawMessage   `json:"dependencies"`
	DevDependencies      json.RawMessage   `json:"devDependencies"`
	OptionalDependencies json.RawMessage   `json:"optionalDependencies"`
	PeerDependencies     json.RawMessage   `json:"peerDependencies"`
	BundleDependencies   json.RawMessage   `json:"bundleDependencies"`
	BundledDependencies  json.RawMessage   `json:"bundledDependencies"`
	Workspaces           json.RawMessage   `json:"workspaces"`
}

// needsInstall reports whether package.json declares anything an install
// would act on.
func (pj *packageJSON) needsInstall() bool {
	for _, raw := range []json.RawMessage{pj.Dependencies, pj.DevDependencies, pj.OptionalDependencies,
		pj.PeerDependencies, pj.BundleDependencies, pj.BundledDependencies, pj.Workspaces} {
		switch strings.TrimSpace(string(raw)) {
		case "", "null", "{}", "[]", "false":
		default:
			return true
		}
	}
	for _, s := range []string{"preinstall", "install", "postinstall", "prepare"} {
		if strings.TrimSpace(pj.Scripts[s]) != "" {
			return true
		}
	}
	return false
}

// detectNode plans a Node.js app (dir has a package.json, whose contents
// are pkgData): the package manager by the lockfile, its install, the build
// script, and the start (start, when not empty, is the explicit or Procfile
// command). An app without a way to start that has a build (or a static
// folder named in opt) becomes a static site served from the build's output.
func detectNode(dir string, opt Options, start string) (Plan, error) {
	p := Plan{Language: Node}
	pkgData, err := readAppFile(dir, "package.json")
	if err != nil {
		return p, err
	}
	var pj packageJSON
	if err := json.Unmarshal(pkgData, &pj); err != nil {
		return p, jsonError(pkgData, err)
	}

	if p.Manager, p.Lockfile, err = detectManager(dir); err != nil {
		return p, err
	}
	if p.Lockfile != "" || pj.needsInstall() {
		p.Install = installArgs(dir, p.Manager, p.Lockfile)
		if p.LockHash, err = lockHash(dir, p.Manager, p.Lockfile, pkgData); err != nil {
			return p, err
		}
	}
	usesManager := p.Install != nil

	switch {
	case opt.Build != "":
		p.Build = opt.Build
	case strings.TrimSpace(pj.Scripts["build"]) != "":
		p.Build = string(p.Manager) + " run build"
		usesManager = true
	}

	var startViaManager bool
	if p.Start, startViaManager, err = detectStart(dir, start, p.Manager, &pj); err != nil {
		if p.Build == "" && opt.StaticDir == "" {
			return p, err
		}
		// Nothing to start, something built: the build's output is a site.
		p.Start, p.Static, p.StaticDir = "", true, opt.StaticDir
	}
	usesManager = usesManager || startViaManager

	if usesManager {
		if _, err := exec.LookPath(string(p.Manager)); err != nil {
			return p, notInstalled(p.Manager, p.Lockfile)
		}
	}
	return p, nil
}

// jsonError describes a package.json that does not parse, with the line of
// a syntax error.
func jsonError(data []byte, err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line := 1 + strings.Count(string(data[:min(int(syn.Offset), len(data))]), "\n")
		return fmt.Errorf("invalid package.json (line %d): %v", line, err)
	}
	return fmt.Errorf("invalid package.json: %v", err)
}

// detectManager picks the package manager from the lockfiles in dir.
func detectManager(dir string) (Manager, string, error) {
	var found []string
	var managers []Manager
	manager, lockfile := NPM, ""
	for _, lf := range lockfiles {
		info, err := os.Stat(filepath.Join(dir, lf.name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("check %s: %w", lf.name, err)
		}
		if info.IsDir() {
			continue
		}
		found = append(found, lf.name)
		if len(managers) == 0 || managers[len(managers)-1] != lf.manager {
			managers = append(managers, lf.manager)
		}
		manager, lockfile = lf.manager, lf.name
	}
	if len(managers) > 1 {
		return "", "", fmt.Errorf("found %s: keep one lockfile so the package manager is unambiguous", joinAnd(found))
	}
	return manager, lockfile, nil
}

// joinAnd joins names as "a, b and c".
func joinAnd(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// notInstalled says which package manager is missing and how to get it.
func notInstalled(m Manager, lockfile string) error {
	what := lockfile
	if what == "" {
		what = "package.json"
	}
	switch m {
	case Yarn, PNPM:
		return fmt.Errorf("%s found but %s is not installed: install it with `npm install -g %s` or `corepack enable`", what, m, m)
	default:
		return fmt.Errorf("%s found but %s is not installed: install Node.js with npm", what, m)
	}
}

// installArgs is the install command for the manager. Progress output is off
// so the log stays readable.
func installArgs(dir string, m Manager, lockfile string) []string {
	switch m {
	case Yarn:
		if yarnBerry(dir, lockfile) {
			// Yarn 2+ spells "frozen lockfile" --immutable and has no
			// progress flag; it turns progress off itself when CI is set.
			return []string{"yarn", "install", "--immutable"}
		}
		return []string{"yarn", "install", "--frozen-lockfile", "--non-interactive", "--no-progress"}
	case PNPM:
		return []string{"pnpm", "install", "--frozen-lockfile", "--reporter=append-only"}
	default:
		if lockfile == "" {
			return npmInstallArgs()
		}
		return []string{"npm", "ci", "--no-audit", "--no-fund", "--no-progress"}
	}
}

// npmInstallArgs is the install command for npm without a usable lockfile.
func npmInstallArgs() []string {
	return []string{"npm", "install", "--no-audit", "--no-fund", "--no-progress"}
}

// yarnBerry reports whether the yarn.lock named lockfile in dir was
// written by Yarn 2 or later.
func yarnBerry(dir, lockfile string) bool {
	data, err := readAppFile(dir, lockfile)
	return err == nil && strings.Contains(string(data[:min(len(data), 4096)]), "\n__metadata:")
}

// lockHash hashes everything that determines the installed node_modules.
func lockHash(dir string, m Manager, lockfile string, pkgData []byte) (string, error) {
	names := hashedConfig
	if lockfile != "" {
		names = append([]string{lockfile}, hashedConfig...)
	}
	return hashParts(dir, [][2]string{{"buildpack-lockhash-v1", string(m)}, {"package.json", string(pkgData)}}, names)
}

// hashParts is a hex SHA-256 over the named values, then over the files
// of dir named (those that exist), each part as name, length, contents.
func hashParts(dir string, values [][2]string, names []string) (string, error) {
	h := sha256.New()
	part := func(name string, data []byte) {
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(data))
		h.Write(data)
	}
	for _, v := range values {
		part(v[0], []byte(v[1]))
	}
	for _, name := range names {
		data, err := readAppFile(dir, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		part(name, data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// detectStart finds the start command line of a Node.js app (explicit: the
// start option or the Procfile's web: line, when not empty) and reports
// whether it runs through the package manager.
func detectStart(dir, explicit string, m Manager, pj *packageJSON) (string, bool, error) {
	if explicit != "" {
		return explicit, false, nil
	}
	if strings.TrimSpace(pj.Scripts["start"]) != "" {
		return string(m) + " start", true, nil
	}
	if pj.Main != "" {
		main := filepath.Clean(pj.Main)
		if !filepath.IsLocal(main) {
			return "", false, fmt.Errorf("package.json main %q points outside the app", pj.Main)
		}
		if nodeEntryExists(filepath.Join(dir, main)) {
			if strings.HasPrefix(main, "-") {
				main = "./" + main
			}
			return "node " + shell.Quote(main), false, nil
		}
	}
	for _, name := range []string{"server.js", "index.js"} {
		if isFile(filepath.Join(dir, name)) {
			return "node " + name, false, nil
		}
	}
	return "", false, errors.New("no start command found: add a start script to package.json, a Procfile with a web: line, a server.js or index.js, or pass --start")
}

// procfileWeb returns the command of the web: process of dir's Procfile.
func procfileWeb(dir string) (string, bool, error) {
	data, err := readAppFile(dir, "Procfile")
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, cmd, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || strings.TrimSpace(name) != "web" {
			continue
		}
		cmd = strings.TrimSpace(cmd)
		if cmd == "" {
			return "", false, errors.New("Procfile has an empty web: command")
		}
		return cmd, true, nil
	}
	return "", false, nil
}

// nodeEntryExists reports whether node would find an entry point at path:
// the file itself, the file with a .js, .cjs or .mjs extension, or a
// directory with an index.js.
func nodeEntryExists(path string) bool {
	for _, p := range []string{path, path + ".js", path + ".cjs", path + ".mjs", filepath.Join(path, "index.js")} {
		if isFile(p) {
			return true
		}
	}
	return false
}

func isFile(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular()
}

// commandLine renders an argument list as a command line for messages.
func commandLine(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		parts[i] = shell.Quote(a)
	}
	return strings.Join(parts, " ")
}

// maxAppFile bounds what readAppFile reads of one file: the largest
// lockfiles of real apps are a few MiB, and a pushed tree must not make
// the agent, which serves every slot, read gigabytes into memory.
const maxAppFile = 64 << 20

// readAppFile reads the file name of the app in dir, which must be a
// regular file inside dir: a link is followed only inside dir (os.Root),
// and a FIFO, device or socket is refused without a read that could block
// or never end (a pushed tree may hold any of them, or links to them). A
// missing file is an error wrapping fs.ErrNotExist.
func readAppFile(dir, name string) ([]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	defer root.Close()
	// O_NONBLOCK: opening a FIFO for reading would wait for a writer.
	f, err := root.OpenFile(name, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		if info, lerr := root.Lstat(name); lerr == nil && info.Mode().Type() == fs.ModeSymlink && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read %s: a link that leads out of the app", name)
		}
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: %s, not a regular file", name, kind(info.Mode()))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxAppFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxAppFile {
		return nil, fmt.Errorf("read %s: larger than the %d MiB detect reads of one file", name, maxAppFile>>20)
	}
	return data, nil
}

// kind names the type of a file that is not a regular one.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a folder"
	}
	return "a special file"
}
