package testkit

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/reaper"
)

// NeedPython skips the test when python3 cannot make a virtualenv.
func NeedPython(t testing.TB) {
	t.Helper()
	if _, err := reaper.Output(t.Context(), exec.Command("python3", "-c", "import venv, ensurepip")); err != nil {
		t.Skipf("python3 with venv is not installed: %v", err)
	}
}

// Wheel makes a pure-Python wheel of package name at version whose module
// name/__init__.py holds code: the files a wheel has (the module, METADATA,
// WHEEL, RECORD with each file's hash), zipped with Go's standard library.
// It returns the wheel's file name and contents.
func Wheel(name, version, code string) (string, []byte, error) {
	info := name + "-" + version + ".dist-info/"
	files := []struct{ path, data string }{
		{name + "/__init__.py", code},
		{info + "METADATA", "Metadata-Version: 2.1\nName: " + name + "\nVersion: " + version + "\n"},
		{info + "WHEEL", "Wheel-Version: 1.0\nGenerator: coder-slots-testkit\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}
	var record bytes.Buffer
	for _, f := range files {
		sum := sha256.Sum256([]byte(f.data))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f.path, base64.RawURLEncoding.EncodeToString(sum[:]), len(f.data))
	}
	record.WriteString(info + "RECORD,,\n")
	files = append(files, struct{ path, data string }{info + "RECORD", record.String()})
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		w, err := zw.Create(f.path)
		if err != nil {
			return "", nil, err
		}
		if _, err := w.Write([]byte(f.data)); err != nil {
			return "", nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return "", nil, err
	}
	return name + "-" + version + "-py3-none-any.whl", buf.Bytes(), nil
}

// WritePythonIndex writes a package index (PEP 503's simple layout) under
// root/simple, holding one wheel per name → code (version 1.0), for a
// static file server such as `python3 -m http.server --directory root`.
func WritePythonIndex(root string, packages map[string]string) error {
	for name, code := range packages {
		file, data, err := Wheel(name, "1.0", code)
		if err != nil {
			return err
		}
		dir := filepath.Join(root, "simple", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		page := fmt.Sprintf("<!DOCTYPE html><html><body><a href=\"%s#sha256=%s\">%s</a></body></html>\n", file, hex.EncodeToString(sum[:]), file)
		if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(page), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// PythonIndex serves WritePythonIndex's index with `python3 -m
// http.server` on a free loopback port and returns its URL for
// PIP_INDEX_URL. The server stops with the test. The process is started
// through the reaper (callers' TestMain runs its wait loop).
func PythonIndex(t testing.TB, packages map[string]string) string {
	t.Helper()
	root := t.TempDir()
	if err := WritePythonIndex(root, packages); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	cmd := exec.Command("python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", root, strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	child, err := reaper.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-child.Pid, syscall.SIGKILL)
		<-child.Done()
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/simple/", port)
	WaitHTTP(t, url, 200, 15*time.Second)
	return url
}
