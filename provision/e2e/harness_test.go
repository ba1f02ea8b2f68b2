//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// workspaceImage is the tag of the workspace image the test builds.
const workspaceImage = "coder-slots/workspace:e2e"

// hostCABundle is this machine's CA bundle. It goes into the base images:
// a machine whose TLS is intercepted (the module proxy and the npm registry
// here) trusts an extra CA, which builds and deploys in the images need too.
func hostCABundle() ([]byte, error) {
	path := os.Getenv("SSL_CERT_FILE")
	if path == "" {
		path = "/etc/ssl/certs/ca-certificates.crt"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the host's CA bundle: %w", err)
	}
	return b, nil
}

// baseTags are the tags of the local base images, which stand in for
// Docker Hub's golang and node images (this machine cannot pull them). They
// carry a hash of the host's CA bundle, so a new bundle makes new bases.
type baseTags struct{ debian, goImage, node string }

func newBaseTags(bundle []byte, goVersion string) baseTags {
	sum := sha256.Sum256(bundle)
	h := hex.EncodeToString(sum[:4])
	return baseTags{
		debian:  "coder-slots-e2e/debian:bookworm-" + h,
		goImage: "coder-slots-e2e/go:" + goVersion + "-" + h,
		node:    "coder-slots-e2e/node:bookworm-" + h,
	}
}

// cacheDir is where the harness keeps what outlives a run (Docker's data,
// the base images, the Coder binary), outside the checkout so that a fresh
// clone on the same machine reuses it.
func cacheDir() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		base = filepath.Join(os.Getenv("HOME"), ".cache")
	}
	return filepath.Join(base, "coder-slots", "e2e")
}

// preflight says, in one line, what this machine lacks for the test.
func preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("make e2e needs root: it starts its own dockerd and runs PostgreSQL as the user postgres")
	}
	var missing []string
	// containerd, ctr and runc: the Kubernetes node's runtime; gcc and strip:
	// its pause program (static: libc6-dev).
	for _, bin := range []string{"dockerd", "docker", "debootstrap", "git", "npm", "terraform", "tar", "containerd", "ctr", "runc", "gcc", "strip"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if _, err := pgBinDir(); err != nil {
		missing = append(missing, "postgres (Debian's postgresql)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("make e2e needs %s on this machine (apt-get install docker.io debootstrap postgresql git npm containerd gcc libc6-dev; terraform on PATH)", strings.Join(missing, ", "))
	}
	return nil
}

// pgBinDir is the newest /usr/lib/postgresql/<version>/bin.
func pgBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) < pgVersion(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "postgres")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("no PostgreSQL server under /usr/lib/postgresql")
}

func pgVersion(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// command runs name with args and returns its combined output; the error
// names the command and ends with the output's last lines.
func command(ctx context.Context, dir string, env []string, stdin io.Reader, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(out.String(), 30))
	}
	return out.String(), nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tailFile is the last n lines of a file, or why there are none.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tail(string(b), n)
}

// freePort is a loopback TCP port nobody listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls check until it returns nil or the timeout passes; the
// error is check's last one.
func waitFor(ctx context.Context, timeout, every time.Duration, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within %s: %w", what, timeout, err)
		case <-time.After(every):
		}
	}
}

// daemon is a background process of the harness, in its own process group.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startDaemon starts name with args, its output in logPath.
func startDaemon(name, logPath string, env []string, cred *syscall.Credential, args ...string) (*daemon, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: filepath.Base(name), cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(d.done)
	}()
	return d, nil
}

// stop sends sig to the daemon's group, then SIGKILL after grace.
func (d *daemon) stop(sig syscall.Signal, grace time.Duration) {
	if d == nil {
		return
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, sig)
	select {
	case <-d.done:
	case <-time.After(grace):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

// exited reports whether the daemon has ended.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// dockerEngine is a dockerd of the harness's own: no bridge, no iptables
// (this machine allows loopback traffic only, so workspaces use the host's
// network), its data, state and socket under the cache dir.
type dockerEngine struct {
	*daemon
	dir  string
	host string // DOCKER_HOST
}

func startDocker(ctx context.Context, cache string) (*dockerEngine, error) {
	dir := filepath.Join(cache, "docker")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("docker dir: %w", err)
	}
	killLeftovers(dir)
	unmountUnder(dir)
	sock := filepath.Join(dir, "docker.sock")
	d, err := startDaemon("dockerd", filepath.Join(dir, "dockerd.log"), nil, nil,
		"--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
		"--host-gateway-ip=127.0.0.1",
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "-H", "unix://"+sock)
	if err != nil {
		return nil, err
	}
	e := &dockerEngine{daemon: d, dir: dir, host: "unix://" + sock}
	err = waitFor(ctx, 60*time.Second, 200*time.Millisecond, "dockerd answering", func() error {
		if d.exited() {
			return errors.New("dockerd exited:\n" + tailFile(d.log, 20))
		}
		_, err := command(ctx, "", []string{"DOCKER_HOST=" + e.host}, nil, "docker", "version", "--format", "{{.Server.Version}}")
		return err
	})
	if err == nil && d.exited() {
		err = errors.New("dockerd exited:\n" + tailFile(d.log, 20))
	}
	if err != nil {
		e.stop()
		return nil, err
	}
	return e, nil
}

// stop ends dockerd and unmounts whatever it left mounted.
func (e *dockerEngine) stop() {
	if e == nil {
		return
	}
	e.daemon.stop(syscall.SIGTERM, 30*time.Second)
	unmountUnder(e.dir)
}

// docker runs the docker CLI against this engine.
func (e *dockerEngine) docker(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	return command(ctx, "", []string{"DOCKER_HOST=" + e.host}, stdin, "docker", args...)
}

func (e *dockerEngine) hasImage(ctx context.Context, ref string) bool {
	_, err := e.docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", ref)
	return err == nil
}

// killLeftovers kills every dockerd (and its containerd) working in dir,
// left by a run that was killed itself: two engines on one data root would
// fight over its socket.
func killLeftovers(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if !strings.HasSuffix(args[0], "dockerd") && !strings.HasSuffix(args[0], "containerd") {
			continue
		}
		if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, dir+"/") || strings.HasPrefix(a, "unix://"+dir+"/") }) {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	for _, pid := range pids {
		for i := 0; i < 300 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// unmountUnder detaches every mount below dir, deepest first (dockerd's
// overlays, its netns and its exec root when it did not clean up).
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// aptMirror is the Debian mirror this machine's apt uses, read from its
// sources (deb822 or one-line form); debootstrap takes its bookworm from it.
func aptMirror() (string, error) {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		for _, stanza := range strings.Split(string(b), "\n\n") {
			var uri string
			debian := false
			for _, line := range strings.Split(stanza, "\n") {
				k, v, _ := strings.Cut(line, ":")
				switch strings.TrimSpace(k) {
				case "URIs":
					uri = strings.Fields(v + " ")[0]
				case "Suites":
					debian = slices.Contains(strings.Fields(v), "bookworm")
				}
			}
			if debian && uri != "" {
				return uri, nil
			}
		}
	}
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, name := range append([]string{"/etc/apt/sources.list"}, lists...) {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == "deb" && f[2] == "bookworm" {
				return f[1], nil
			}
		}
	}
	return "", errors.New("no Debian bookworm mirror in /etc/apt/sources.list*")
}

// baseImages makes, once, the Debian bookworm image (debootstrap from the
// machine's apt mirror, with the machine's CA bundle, then docker import), a
// Go builder image (that Debian with this machine's Go toolchain) and a
// Node.js runtime image (that Debian with Debian's nodejs and npm and a user
// node of uid 1000, as Docker Hub's node images have).
func (e *dockerEngine) baseImages(ctx context.Context, cache string) (baseTags, error) {
	bundle, err := hostCABundle()
	if err != nil {
		return baseTags{}, err
	}
	goVersion, err := command(ctx, "", nil, nil, "go", "env", "GOVERSION")
	if err != nil {
		return baseTags{}, err
	}
	tags := newBaseTags(bundle, strings.TrimPrefix(strings.TrimSpace(goVersion), "go"))
	if !e.hasImage(ctx, tags.debian) {
		if err := e.debianImage(ctx, cache, tags.debian, bundle); err != nil {
			return baseTags{}, err
		}
	}
	if !e.hasImage(ctx, tags.goImage) {
		goroot, err := command(ctx, "", nil, nil, "go", "env", "GOROOT")
		if err != nil {
			return baseTags{}, err
		}
		df := "FROM " + tags.debian + "\n" +
			"RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*\n" +
			"COPY . /usr/local/go\n" +
			"ENV PATH=/usr/local/go/bin:$PATH\n"
		if _, err := e.build(ctx, strings.TrimSpace(goroot), strings.NewReader(df), "-f", "-", "-t", tags.goImage); err != nil {
			return baseTags{}, err
		}
	}
	if !e.hasImage(ctx, tags.node) {
		df := "FROM " + tags.debian + "\n" +
			"RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm ca-certificates" +
			" && useradd --create-home --uid 1000 --user-group --shell /bin/bash node && rm -rf /var/lib/apt/lists/*\n"
		if err := e.buildDockerfile(ctx, df, tags.node); err != nil {
			return baseTags{}, err
		}
	}
	return tags, nil
}

// debianImage debootstraps a minimal bookworm, adds the host's CA bundle
// where update-ca-certificates finds it (installing ca-certificates in a
// later image keeps it), and imports it as tag.
func (e *dockerEngine) debianImage(ctx context.Context, cache, tag string, bundle []byte) error {
	mirror, err := aptMirror()
	if err != nil {
		return err
	}
	root := filepath.Join(cache, "rootfs-bookworm")
	os.RemoveAll(root)
	defer os.RemoveAll(root)
	if _, err := command(ctx, "", nil, nil, "debootstrap", "--variant=minbase", "bookworm", root, mirror); err != nil {
		return err
	}
	cas := filepath.Join(root, "usr", "local", "share", "ca-certificates")
	if err := os.MkdirAll(cas, 0o755); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cas, "host-ca-bundle.crt"), bundle, 0o644); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	tarball := filepath.Join(cache, "rootfs-bookworm.tar")
	defer os.Remove(tarball)
	if _, err := command(ctx, "", nil, nil, "tar", "-C", root, "-cf", tarball, "."); err != nil {
		return err
	}
	f, err := os.Open(tarball)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	defer f.Close()
	_, err = e.docker(ctx, f, "import", "-", tag)
	return err
}

// build runs the classic builder (Debian's Docker 20.10 has no buildx) on
// the host's network (dockerd has no bridge).
func (e *dockerEngine) build(ctx context.Context, contextDir string, stdin io.Reader, args ...string) (string, error) {
	all := append([]string{"build", "--network", "host", "--force-rm"}, args...)
	all = append(all, contextDir)
	return command(ctx, "", []string{"DOCKER_HOST=" + e.host, "DOCKER_BUILDKIT=0"}, stdin, "docker", all...)
}

// buildDockerfile builds the Dockerfile df, which copies nothing in, as tag.
func (e *dockerEngine) buildDockerfile(ctx context.Context, df, tag string) error {
	empty, err := os.MkdirTemp("", "coder-slots-e2e-ctx-")
	if err != nil {
		return fmt.Errorf("context: %w", err)
	}
	defer os.RemoveAll(empty)
	_, err = e.build(ctx, empty, strings.NewReader(df), "-f", "-", "-t", tag)
	return err
}

// workspaceImage builds images/Dockerfile from the repository at root on
// the local bases. The classic builder reads no Dockerfile.dockerignore, so
// the context is staged here with that file's own patterns.
func (e *dockerEngine) workspaceImage(ctx context.Context, root string, bases baseTags) error {
	stage, err := os.MkdirTemp("", "coder-slots-e2e-image-")
	if err != nil {
		return fmt.Errorf("image context: %w", err)
	}
	defer os.RemoveAll(stage)
	if err := stageContext(root, stage); err != nil {
		return err
	}
	df, err := os.ReadFile(filepath.Join(root, "images", "Dockerfile"))
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if err := os.WriteFile(filepath.Join(stage, "Dockerfile"), df, 0o644); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	args := []string{"-f", filepath.Join(stage, "Dockerfile"), "-t", workspaceImage,
		"--build-arg", "GO_IMAGE=" + bases.goImage, "--build-arg", "NODE_IMAGE=" + bases.node, "--build-arg", "VERSION=e2e"}
	if p := os.Getenv("GOPROXY"); p != "" {
		args = append(args, "--build-arg", "GOPROXY="+p)
	}
	_, err = e.build(ctx, stage, nil, args...)
	return err
}

// stageContext copies what images/Dockerfile.dockerignore lets through
// from root into dst.
func stageContext(root, dst string) error {
	f, err := os.Open(filepath.Join(root, "images", "Dockerfile.dockerignore"))
	if err != nil {
		return fmt.Errorf("image context: %w", err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("image context: %w", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return fmt.Errorf("image context: %w", err)
	}
	return filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") || rel == "bin" || rel == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if excluded, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel)); err != nil || excluded || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// coderBinary builds, once per version, the OSS Coder server from its Go
// module (the version codersdk is pinned to in go.mod) and returns its path.
func coderBinary(ctx context.Context, root, cache string) (string, error) {
	version, err := command(ctx, root, nil, nil, "go", "list", "-m", "-f", "{{.Version}}", "github.com/coder/coder/v2")
	if err != nil {
		return "", err
	}
	version = strings.TrimSpace(version)
	bin := filepath.Join(cache, "coder-"+version)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// stdout alone: it is JSON, and go prints its progress on stderr.
	download := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/coder/coder/v2@"+version)
	download.Dir = root
	dl, err := download.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(dl, &mod); err != nil || jerr != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download of coder %s: %v %v %s:\n%s", version, err, jerr, mod.Error, dl)
	}
	modDir := mod.Dir
	// The module cache is read-only, and coder's module is built as the
	// main module (its go.mod has replace directives): a writable copy.
	src := filepath.Join(cache, "src-"+version)
	if _, err := os.Stat(src); err != nil {
		os.RemoveAll(src + ".tmp")
		if _, err := command(ctx, "", nil, nil, "cp", "-r", modDir, src+".tmp"); err != nil {
			return "", err
		}
		if _, err := command(ctx, "", nil, nil, "chmod", "-R", "u+w", src+".tmp"); err != nil {
			return "", err
		}
		if err := os.Rename(src+".tmp", src); err != nil {
			return "", fmt.Errorf("coder source: %w", err)
		}
	}
	ldflags := "-X github.com/coder/coder/v2/buildinfo.tag=" + strings.TrimPrefix(version, "v") + " -X github.com/coder/coder/v2/buildinfo.agpl=true"
	if _, err := command(ctx, src, nil, nil, "go", "build", "-o", bin+".tmp", "-ldflags", ldflags, "./cmd/coder"); err != nil {
		return "", err
	}
	return bin, os.Rename(bin+".tmp", bin)
}

// postgresUser is Debian's postgres account, which the server runs as.
func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("user postgres: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// startPostgres runs a throw-away PostgreSQL cluster for Coder on a
// loopback port, with a database coder, and returns its URL.
func startPostgres(ctx context.Context, dir string) (*daemon, string, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, "", err
	}
	cred, err := postgresUser()
	if err != nil {
		return nil, "", err
	}
	data := filepath.Join(dir, "pgdata")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, "", fmt.Errorf("postgres dir: %w", err)
	}
	for _, p := range []string{dir, data} {
		if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, "", fmt.Errorf("postgres dir: %w", err)
		}
	}
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("initdb: %w\n%s", err, tail(string(out), 20))
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	d, err := startDaemon(filepath.Join(bin, "postgres"), filepath.Join(dir, "postgres.log"), nil, cred,
		"-D", data, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off")
	if err != nil {
		return nil, "", err
	}
	psql := filepath.Join(bin, "psql")
	err = waitFor(ctx, 30*time.Second, 100*time.Millisecond, "PostgreSQL for Coder", func() error {
		if d.exited() {
			return errors.New("postgres exited:\n" + tailFile(d.log, 20))
		}
		_, err := command(ctx, "", nil, nil, psql, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "-c", "CREATE DATABASE coder")
		return err
	})
	if err != nil {
		d.stop(syscall.SIGINT, 10*time.Second)
		return nil, "", err
	}
	return d, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/coder?sslmode=disable", port), nil
}
