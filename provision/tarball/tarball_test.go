package tarball

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/terraform/tfmirror"
)

func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func fixture(t *testing.T, name string) string {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// entries lists what Coder would unpack.
func entries(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		out[h.Name] = string(body)
	}
}

func TestCoderRules(t *testing.T) {
	dir := tree(t, map[string]string{
		"main.tf":                "# main",
		"build/Dockerfile":       "FROM x",
		".slotprov-render":       "marker",
		".terraform/providers/x": "binary",
		".git/config":            "x",
		"build/.env":             "SECRET=1",
		"terraform.tfstate":      "{}",
		"terraform.tfvars":       "a = 1",
		"x.auto.tfvars":          "a = 1",
		LockFile:                 fixture(t, "registry.lock.hcl"),
	})
	res, err := Pack(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := entries(t, res.Tar)
	var names []string
	for n := range got {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{LockFile, "build/", "build/Dockerfile", "main.tf"}
	if !slices.Equal(names, want) {
		t.Fatalf("archived %q; want %q", names, want)
	}
	if got["build/Dockerfile"] != "FROM x" {
		t.Fatalf("build/Dockerfile = %q", got["build/Dockerfile"])
	}
	if len(res.Skipped) != 3 {
		t.Fatalf("skipped: %q", res.Skipped)
	}
	again, err := Pack(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Tar, res.Tar) {
		t.Fatal("two archives of the same files differ")
	}
}

// terraformInit runs the real terraform init against the local provider
// mirror in a new template directory and returns it, lock file and all.
func terraformInit(t *testing.T) string {
	t.Helper()
	rc := tfmirror.Require(t)
	dir := tree(t, map[string]string{"main.tf": `terraform {
  required_providers {
    coder = {
      source  = "coder/coder"
      version = "~> 2.20"
    }
  }
}
`})
	cmd := exec.Command("terraform", "init", "-input=false", "-no-color")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "CHECKPOINT_DISABLE=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("terraform init: %v\n%s", err, out)
	}
	return dir
}

func TestMirrorLockIsLeftOut(t *testing.T) {
	dir := terraformInit(t)
	lock, err := os.ReadFile(filepath.Join(dir, LockFile))
	if err != nil {
		t.Fatalf("terraform init wrote no lock file: %v", err)
	}
	res, err := Pack(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := entries(t, res.Tar); len(got) != 1 || got["main.tf"] == "" {
		t.Fatalf("archived %v; want main.tf alone (the lock made against the mirror and .terraform/ left out)\nlock:\n%s", got, lock)
	}
	if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], "local provider mirror") {
		t.Fatalf("skipped: %q", res.Skipped)
	}
	// One provider from the mirror is enough to leave the file out.
	mixed := strings.Replace(fixture(t, "registry.lock.hcl"), `    "zh:0a2a0b6e6bca5f4bd5f2c3c1c8cbbb7b1d3c8f1a4a86d87b6d8b1dd0f3b8b1e9",`+"\n", "", 1)
	dir = tree(t, map[string]string{"main.tf": "# main", LockFile: mixed})
	if res, err = Pack(dir); err != nil || len(res.Skipped) != 1 {
		t.Fatalf("mixed lock: %v %q", err, res.Skipped)
	}
	dir = tree(t, map[string]string{"main.tf": "# main", LockFile: "provider {"})
	if _, err := Pack(dir); err == nil || !strings.Contains(err.Error(), LockFile) {
		t.Fatalf("broken lock: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	if _, err := Pack(tree(t, map[string]string{"README.md": "x", "sub/main.tf": "x"})); err == nil || !strings.Contains(err.Error(), "has no .tf file") {
		t.Fatalf("no .tf: %v", err)
	}
	big := strings.Repeat("x", Limit)
	if _, err := Pack(tree(t, map[string]string{"main.tf": "x", "agent.bin": big})); err == nil || !strings.Contains(err.Error(), "over Coder's 1048576-byte template limit at agent.bin") {
		t.Fatalf("too big: %v", err)
	}
	if _, err := Pack(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("no error for a missing directory")
	}
}
