package render

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The module's start script, run by sh as Coder's agent runs it: with the
// settings Terraform puts above it, a HOME, the script bin dir, and no
// slotagent on the PATH. It downloads a real release archive of a real
// slotagent from a server on loopback.

var (
	slotagentOnce sync.Once
	slotagentBin  string
	slotagentErr  error
)

// slotagent builds the agent once per test run.
func slotagent(t *testing.T) string {
	t.Helper()
	slotagentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "render-script-")
		if err != nil {
			slotagentErr = err
			return
		}
		slotagentBin = filepath.Join(dir, "slotagent")
		out, err := exec.Command("go", "build", "-o", slotagentBin, "../../agent/cmd/slotagent").CombinedOutput()
		if err != nil {
			slotagentErr = fmt.Errorf("build slotagent: %v\n%s", err, out)
		}
	})
	if slotagentErr != nil {
		t.Fatal(slotagentErr)
	}
	return slotagentBin
}

// archive is a release archive (as make dist writes it) holding file as
// slotagent.
func archive(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: "slotagent", Mode: 0o755, Size: int64(len(b))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(b)
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// release serves an archive and its SHA256SUMS under /v1/, counting the
// archive's downloads.
type release struct {
	url       string // the archive's URL with {arch}
	sha256    string
	downloads atomic.Int32
}

func serveRelease(t *testing.T, tarball []byte) *release {
	sum := sha256.Sum256(tarball)
	r := &release{sha256: hex.EncodeToString(sum[:])}
	name := DistArchive("v1", "amd64")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/v1/" + name:
			r.downloads.Add(1)
			w.Write(tarball)
		case "/v1/SHA256SUMS":
			fmt.Fprintf(w, "%s  %s\n", r.sha256, name)
		default:
			http.NotFound(w, req)
		}
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/v1/" + DistArchive("v1", ArchPlaceholder)
	return r
}

// workspace is a user's home with the module's environment.
type workspace struct {
	t       *testing.T
	home    string
	binDir  string // CODER_SCRIPT_BIN_DIR
	env     []string
	ports   []int
	dataDir string
}

func newWorkspace(t *testing.T) *workspace {
	w := &workspace{t: t, home: t.TempDir()}
	w.binDir = filepath.Join(w.home, ".coder-script-bin")
	w.dataDir = filepath.Join(w.home, "data", "slotagent")
	os.MkdirAll(w.binDir, 0o755)
	w.env = []string{"HOME=" + w.home, "PATH=" + w.binDir + ":/usr/local/bin:/usr/bin:/bin", "CODER_SCRIPT_BIN_DIR=" + w.binDir,
		"SLOTAGENT_POSTGRES_ENABLED=false", "SLOTAGENT_BIND=127.0.0.1"}
	names := []string{"ADMIN_PORT", "SLOT_A_PORT", "SLOT_B_PORT", "SLOT_C_PORT", "SLOT_D_PORT", "SLOT_E_PORT"}
	for _, n := range names {
		p := freePort(t)
		// Each pick's listener is closed before the next: the kernel may
		// hand out the same port twice (seen once in ten runs).
		for slices.Contains(w.ports, p) {
			p = freePort(t)
		}
		w.ports = append(w.ports, p)
		w.env = append(w.env, n+"="+strconv.Itoa(p))
	}
	t.Cleanup(w.stop)
	return w
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// run runs the script with the module's settings and returns its stdout,
// stderr and exit code.
func (w *workspace) run(installURL, sha, instance string, extraEnv ...string) (string, string, int) {
	w.t.Helper()
	settings := map[string]string{"SLOTS_INSTALL_URL": installURL, "SLOTS_INSTALL_SHA256": sha, "SLOTS_INSTANCE": instance}
	script := "#!/bin/sh\n"
	for _, k := range []string{"SLOTS_INSTALL_SHA256", "SLOTS_INSTALL_URL", "SLOTS_INSTANCE"} { // Terraform's key order
		script += k + "='" + base64.StdEncoding.EncodeToString([]byte(settings[k])) + "'\n"
	}
	script += string(runScript)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Env = append(append([]string{}, w.env...), extraEnv...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// pid is the running service's PID, from its /healthz; 0 when none answers.
func (w *workspace) pid() int {
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(w.ports[0]) + "/healthz")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var about struct {
		PID  int    `json:"pid"`
		Role string `json:"role"`
	}
	if json.NewDecoder(resp.Body).Decode(&about) != nil || about.Role != "service" {
		return 0
	}
	return about.PID
}

func (w *workspace) stop() {
	pid := w.pid()
	if pid == 0 {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end) && syscall.Kill(pid, 0) == nil; {
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *workspace) installed() bool {
	_, err := os.Stat(filepath.Join(w.dataDir, "bin", "slotagent"))
	return err == nil
}

func oneLine(t *testing.T, stderr, want string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "coder-slots: ") || !strings.Contains(stderr, want) {
		t.Fatalf("stderr %q: want one line with %q", stderr, want)
	}
}

func TestScriptInstallsAndStartsTheService(t *testing.T) {
	rel := serveRelease(t, archive(t, slotagent(t)))
	w := newWorkspace(t)
	// No install_sha256: the release's SHA256SUMS.
	out, errOut, code := w.run(rel.url, "", "inst-1")
	if code != 0 || !strings.Contains(out, "installed slotagent from") || !strings.Contains(out, "slotagent started as a service") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	pid := w.pid()
	if pid == 0 {
		t.Fatal("no service answers after the script")
	}
	for _, link := range []string{filepath.Join(w.binDir, "slotagent"), filepath.Join(w.home, ".local", "bin", "slotagent")} {
		if dest, err := os.Readlink(link); err != nil || dest != filepath.Join(w.dataDir, "bin", "slotagent") {
			t.Fatalf("%s -> %q, %v", link, dest, err)
		}
	}
	// A session finds it on its PATH.
	status := exec.Command("sh", "-c", "slotagent status")
	status.Env = w.env
	if b, err := status.CombinedOutput(); err != nil || !strings.Contains(string(b), "as a service") {
		t.Fatalf("slotagent status in a session: %v\n%s", err, b)
	}
	// The agent restarts: the script runs again, downloads nothing, and
	// leaves the running service alone.
	out, errOut, code = w.run(rel.url, "", "inst-1")
	if code != 0 || !strings.Contains(out, "slotagent is already running (pid "+strconv.Itoa(pid)) || rel.downloads.Load() != 1 {
		t.Fatalf("re-run: exit %d, %d downloads\nstdout %s\nstderr %s", code, rel.downloads.Load(), out, errOut)
	}
	// A second module instance in the template.
	_, errOut, code = w.run(rel.url, "", "inst-2")
	if code != 1 {
		t.Fatalf("second instance: exit %d", code)
	}
	if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "another coder-slots module instance already runs slotagent") {
		t.Fatalf("second instance: stderr %q", errOut)
	}
	if w.pid() != pid {
		t.Fatal("the running service was disturbed")
	}
}

func TestScriptRefusesWithOneLine(t *testing.T) {
	tarball := archive(t, "run.sh") // any file: these cases never run it
	rel := serveRelease(t, tarball)
	closed := freePort(t)

	t.Run("unreachable install_url", func(t *testing.T) {
		w := newWorkspace(t)
		url := fmt.Sprintf("http://user:s3cret@127.0.0.1:%d/v1/x.tar.gz?token=t0ken", closed)
		_, errOut, code := w.run(url, rel.sha256, "i")
		if code != 1 || w.installed() {
			t.Fatalf("exit %d, installed %t", code, w.installed())
		}
		oneLine(t, errOut, fmt.Sprintf("cannot download slotagent from http://127.0.0.1:%d/v1/x.tar.gz: curl: (7)", closed))
		if strings.Contains(errOut, "s3cret") || strings.Contains(errOut, "t0ken") {
			t.Fatalf("a secret of the URL reached the log: %q", errOut)
		}
	})
	t.Run("checksum mismatch", func(t *testing.T) {
		w := newWorkspace(t)
		wrong := strings.Repeat("0", 64)
		_, errOut, code := w.run(rel.url, wrong, "i")
		if code != 1 || w.installed() {
			t.Fatalf("exit %d, installed %t", code, w.installed())
		}
		oneLine(t, errOut, "checksum mismatch for "+strings.Replace(rel.url, ArchPlaceholder, "amd64", 1)+": sha256 "+rel.sha256+", want "+wrong)
		if entries, _ := os.ReadDir(filepath.Join(w.dataDir, "bin")); len(entries) != 0 {
			t.Fatalf("left in the bin dir: %v", entries)
		}
	})
	t.Run("data dir not writable", func(t *testing.T) {
		w := newWorkspace(t)
		file := filepath.Join(w.home, "a-file")
		os.WriteFile(file, nil, 0o600)
		_, errOut, code := w.run(rel.url, rel.sha256, "i", "SLOTAGENT_DATA_DIR="+filepath.Join(file, "slots"))
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		oneLine(t, errOut, "the data dir "+filepath.Join(file, "slots")+" is not writable")
	})
	t.Run("not a release archive", func(t *testing.T) {
		bad := serveRelease(t, []byte("<html>a login page</html>"))
		w := newWorkspace(t)
		_, errOut, code := w.run(bad.url, bad.sha256, "i")
		if code != 1 || w.installed() {
			t.Fatalf("exit %d, installed %t", code, w.installed())
		}
		oneLine(t, errOut, "is not a slotagent release archive")
	})
}

// The service's ports are taken by the user's own process: one line, and
// no service is left half started.
func TestScriptPortTaken(t *testing.T) {
	rel := serveRelease(t, archive(t, slotagent(t)))
	w := newWorkspace(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(w.ports[3]))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, errOut, code := w.run(rel.url, rel.sha256, "i")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "address already in use") || !strings.Contains(errOut, "SLOT_C_PORT") {
		t.Fatalf("stderr %q", errOut)
	}
	if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(w.ports[0])); err == nil {
		c.Close()
		t.Fatal("the admin port answers after the failed start")
	}
}
