package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/reaper"
)

// TestGoAndStaticSlotsComeBackAfterKill9: a Go app (started by its
// Procfile naming the binary) in slot a and a static site in slot b,
// deployed with the CLI, show their language in status, refuse traversal
// and symlinks out of the site on the slot's raw socket, and serve again
// after the agent was killed with SIGKILL and started anew.
func TestGoAndStaticSlotsComeBackAfterKill9(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not installed")
	}
	a := newAgent(t)
	a.start()
	gocache, err := reaper.Output(t.Context(), exec.Command("go", "env", "GOCACHE"))
	if err != nil {
		t.Fatal(err)
	}
	files := testkit.GoApp(t)
	files["Procfile"] = "web: hello\n"
	goApp := testkit.WriteTree(t, files)
	a.mustCLI("deploy", "a", "--dir", goApp, "--env", "VERSION=v1", "--env", "GOCACHE="+strings.TrimSpace(string(gocache)), "--wait")
	if _, b := body(t, a.url("a", "/")); b != "go v1 36" {
		t.Fatalf("slot a: %q", b)
	}

	top := t.TempDir()
	writeFile(t, filepath.Join(top, "secret.txt"), "TOP SECRET")
	site := filepath.Join(top, "site")
	if err := os.Mkdir(site, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(site, "index.html"), "<h1>static</h1>")
	writeFile(t, filepath.Join(site, ".env"), "SECRET=1")
	if err := os.Symlink(filepath.Join(top, "secret.txt"), filepath.Join(site, "out.txt")); err != nil {
		t.Fatal(err)
	}
	a.mustCLI("deploy", "b", "--dir", site, "--wait")
	if _, b := body(t, a.url("b", "/")); b != "<h1>static</h1>" {
		t.Fatalf("slot b: %q", b)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", a.ports["b"])
	for _, target := range []string{"/../secret.txt", "/%2e%2e/secret.txt", "/out.txt", "/.env", "/..%2f..%2fsecret.txt"} {
		if got := testkit.RawGet(t, addr, target); strings.Contains(got, "TOP SECRET") || strings.Contains(got, "SECRET=1") || strings.HasPrefix(got, "HTTP/1.1 200") {
			t.Errorf("GET %s through slot b: %q", target, got)
		}
	}
	list := a.processes()
	if row := list.Processes[1]; row.Language != "go" || !strings.Contains(row.Plan, "start: hello") {
		t.Fatalf("slot a row: %+v", row)
	}
	if row := list.Processes[2]; row.Type != "static" || row.Language != "static" || row.Status != "online" {
		t.Fatalf("slot b row: %+v", row)
	}

	a.signal(syscall.SIGKILL)
	a.wait(5 * time.Second)
	a.start()
	testkit.WaitHTTP(t, a.url("a", "/"), 200, 30*time.Second)
	if _, b := body(t, a.url("a", "/")); b != "go v1 36" {
		t.Fatalf("slot a after the restart: %q", b)
	}
	testkit.WaitHTTP(t, a.url("b", "/"), 200, 10*time.Second)
	if _, b := body(t, a.url("b", "/")); b != "<h1>static</h1>" {
		t.Fatalf("slot b after the restart: %q", b)
	}
}
