package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/provision/internal/fakecoder"
	"github.com/coder-slots/coder-slots/terraform/tfmirror"
)

// run runs slotprov and returns its exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run("test", args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "slots.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBadInput: a clear one-line error each, and nothing written or sent.
func TestBadInput(t *testing.T) {
	srv := fakecoder.New()
	defer srv.Close()
	cases := []struct {
		name, yaml string
		args       func(cfg, out string) []string
		env        map[string]string
		want       string
	}{
		{"missing slots.yaml", "", func(_, out string) []string {
			return []string{"render", "-c", "/nonexistent/slots.yaml", "-o", out}
		}, nil, "config: /nonexistent/slots.yaml does not exist"},
		{"malformed slots.yaml", "slots: [a\n", func(cfg, out string) []string { return []string{"render", "-c", cfg, "-o", out} }, nil, "config: "},
		{"unknown key", "slotz: []\n", func(cfg, out string) []string { return []string{"render", "-c", cfg, "-o", out} }, nil,
			"slotz: unknown key (did you mean slots?)"},
		{"duplicate slot names", "slots:\n  - name: b\n  - name: b\n    port: 3009\n", func(cfg, out string) []string { return []string{"render", "-c", cfg, "-o", out} }, nil,
			`slots[1].name: slot "b" is already slots[0]`},
		{"duplicate ports", "slots:\n  - name: a\n    port: 3005\n  - name: e\n", func(cfg, out string) []string { return []string{"render", "-c", cfg, "-o", out} }, nil,
			"slots[1].port: 3005 is already used by slots[0].port"},
		{"app host without *", "app_host: coder.example.com\n", func(cfg, out string) []string { return []string{"render", "-c", cfg, "-o", out} }, nil,
			`app_host: "coder.example.com" must contain exactly one *`},
		{"build mode on kubernetes", "target: kubernetes\nimage:\n  mode: build\n", func(cfg, out string) []string { return []string{"render", "-c", cfg, "-o", out} }, nil,
			`image.mode: "build" is for target docker only`},
		{"bad namespace flag", "", func(cfg, out string) []string {
			return []string{"render", "-c", cfg, "-o", out, "--target", "kubernetes", "--kubernetes-namespace", "Team A"}
		}, nil, `kubernetes.namespace: "Team A" is not a DNS-1123 label`},
		{"toleration without operator", "target: kubernetes\nkubernetes:\n  tolerations:\n    - key: gpu\n", func(cfg, out string) []string { return []string{"render", "-c", cfg, "-o", out} }, nil,
			"kubernetes.tolerations[0].operator: missing"},
		{"app host flag without *", "", func(cfg, out string) []string {
			return []string{"render", "-c", cfg, "-o", out, "--app-host", "apps.example.com"}
		}, nil, `app_host: "apps.example.com" must contain exactly one *`},
		{"network mode flag with shell characters", "", func(cfg, out string) []string {
			return []string{"render", "-c", cfg, "-o", out, "--docker-network-mode", "host; reboot"}
		}, nil, `docker.network_mode: "host; reboot" is not "host" or a Docker network name`},
		{"stop grace not above the shutdown timeout", "shutdown_timeout_seconds: 20\n", func(cfg, out string) []string {
			return []string{"render", "-c", cfg, "-o", out, "--docker-stop-grace-seconds", "20"}
		}, nil, "docker.stop_grace_seconds: 20 must be above shutdown_timeout_seconds (20)"},
		{"validate with TF_CLI_CONFIG_FILE naming nothing", "", func(_, out string) []string { return []string{"validate", out} },
			map[string]string{"TF_CLI_CONFIG_FILE": "/nonexistent/terraformrc"}, "terraform: CLI config /nonexistent/terraformrc: no such file or directory"},
		{"plan with a relative --terraform-config naming nothing", "", func(_, out string) []string {
			return []string{"plan", out, "--workspace", "dev", "--owner", "alice", "--terraform-config", "no/such.tfrc"}
		}, nil, "no/such.tfrc: no such file or directory"},
		{"plan with a bad --app-host", "", func(_, out string) []string {
			return []string{"plan", out, "--workspace", "dev", "--owner", "alice", "--app-host", "https://apps.example.com"}
		}, nil, `app_host: "https://apps.example.com" must contain exactly one *`},
		{"build mode as a module", "target: module\nimage:\n  mode: build\n", func(cfg, out string) []string { return []string{"render", "-c", cfg, "-o", out} }, nil,
			`image.mode: "build" is for the targets docker and kubernetes`},
		{"resources as a module", "", func(cfg, out string) []string {
			return []string{"render", "-c", cfg, "-o", out, "--target", "module", "--resources-memory-mb", "1024"}
		}, nil, "resources: the module does not own the workspace's container"},
		{"stop grace as a module", "target: module\ndocker:\n  stop_grace_seconds: 30\n", func(cfg, out string) []string { return []string{"render", "-c", cfg, "-o", out} }, nil,
			"set destroy_grace_seconds on the template's docker_container"},
		{"unknown target", "", func(cfg, out string) []string { return []string{"render", "-c", cfg, "-o", out, "--target", "modul"} }, nil,
			`target: "modul" is not "docker", "kubernetes" or "module"`},
		{"push a module", "", func(_, out string) []string { return []string{"push", out} },
			map[string]string{"CODER_URL": srv.URL, "CODER_SESSION_TOKEN": "x"}, "is a module, not a template: add it to a template with a module block"},
		{"push without a token", "", func(_, out string) []string { return []string{"push", out} },
			map[string]string{"CODER_URL": srv.URL, "CODER_SESSION_TOKEN": ""}, "push: no session token: set CODER_SESSION_TOKEN"},
		{"push to an unreachable URL", "", func(_, out string) []string { return []string{"push", out} },
			map[string]string{"CODER_URL": "http://127.0.0.1:1", "CODER_SESSION_TOKEN": "x"}, "push: reach the deployment: cannot reach Coder at http://127.0.0.1:1: "},
		{"push with a bad token", "", func(_, out string) []string { return []string{"push", out} },
			map[string]string{"CODER_URL": srv.URL, "CODER_SESSION_TOKEN": "nope"}, "the deployment refused the session token (401: " + fakecoder.SignedOut},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			dir := t.TempDir()
			cfg := writeConfig(t, dir, tc.yaml)
			out := filepath.Join(dir, "template")
			if strings.HasPrefix(tc.name, "push") || strings.HasPrefix(tc.name, "validate") || strings.HasPrefix(tc.name, "plan") {
				args := []string{"render", "-o", out, "--app-host", "*.coder.example.com"}
				if strings.HasPrefix(tc.name, "push a module") {
					args = append(args, "--target", "module")
				}
				if code, _, stderr := run(t, args...); code != 0 {
					t.Fatal(stderr)
				}
			}
			before := listing(t, dir)
			code, _, stderr := run(t, tc.args(cfg, out)...)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 1 and %q", code, stderr, tc.want)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "slotprov: ") {
				t.Fatalf("stderr is not one line: %q", stderr)
			}
			if after := listing(t, dir); after != before {
				t.Fatalf("files changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	if n := srv.Requests("POST /api/v2/files"); n != 0 {
		t.Fatalf("%d uploads reached the deployment", n)
	}
}

// listing is every path under dir with its size.
func listing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			fmt.Fprintf(&b, "%s:%d ", strings.TrimPrefix(p, dir), info.Size())
		}
		return nil
	})
	return b.String()
}

func TestRenderRefusesAForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.tf"), []byte("# hand-written"), 0o644)
	code, _, stderr := run(t, "render", "-o", dir, "--app-host", "*.x.example.com")
	if code != 1 || !strings.Contains(stderr, "exists and is not a previous render") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "main.tf")); string(b) != "# hand-written" {
		t.Fatal("main.tf was overwritten")
	}
	if code, _, stderr := run(t, "render", "-o", dir, "--app-host", "*.x.example.com", "--force"); code != 0 {
		t.Fatal(stderr)
	}
	// A previous render is replaced without --force.
	if code, _, stderr := run(t, "render", "-o", dir, "--app-host", "*.y.example.com"); code != 0 {
		t.Fatal(stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "main.tf")); !strings.Contains(string(b), `"*.y.example.com"`) {
		t.Fatal("the re-render did not replace main.tf")
	}
}

func TestInitRenderValidatePlanPush(t *testing.T) {
	rc := tfmirror.Require(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "slots.yaml")
	if code, _, stderr := run(t, "init", "-o", cfg); code != 0 {
		t.Fatal(stderr)
	}
	tpl := filepath.Join(dir, "template")
	code, out, stderr := run(t, "render", "-c", cfg, "-o", tpl)
	if code != 0 || !strings.Contains(out, "main.tf") || !strings.Contains(out, "the template tarball is") {
		t.Fatalf("render: %d %s %s", code, out, stderr)
	}
	t.Setenv("SLOTPROV_TERRAFORM_CONFIG", rc)
	if code, out, stderr := run(t, "validate", tpl); code != 0 || !strings.Contains(out, "is valid") {
		t.Fatalf("validate: %d %s %s", code, out, stderr)
	}
	// The example leaves app_host to push; plan takes it as push would.
	code, out, stderr = run(t, "plan", tpl, "--workspace", "dev", "--owner", "alice", "--json", "--app-host", "*.coder.example.com")
	if code != 0 || !strings.Contains(out, `"SLOT_A_URL": "https://slot-a--main--dev--alice.coder.example.com"`) {
		t.Fatalf("plan: %d %s %s", code, out, stderr)
	}

	srv := fakecoder.New()
	defer srv.Close()
	t.Setenv("CODER_URL", srv.URL)
	t.Setenv("CODER_SESSION_TOKEN", srv.Token)
	code, out, stderr = run(t, "push", tpl, "-c", cfg, "--name", "slots")
	if code != 0 || !strings.Contains(out, "Created template slots") || !strings.Contains(out, "Pushed slots: version v1") {
		t.Fatalf("push: %d %s %s", code, out, stderr)
	}
	if _, err := os.Stat(filepath.Join(tpl, ".terraform.lock.hcl")); err == nil {
		t.Fatal("validate or plan left a lock file in the template")
	}
}

// On the Docker host's network the workspace's ports are the host's: render
// says so on stderr and still writes the template.
func TestRenderWarnsOfSharedPorts(t *testing.T) {
	dir := t.TempDir()
	tpl := filepath.Join(dir, "template")
	code, _, stderr := run(t, "render", "-o", tpl, "--docker-network-mode", "host")
	if code != 0 || !strings.Contains(stderr, "slotprov: warning: docker.network_mode is host: the workspace listens on the Docker host's ports 9000, 3001, 3002, 3003, 3004, 3005, 5432") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	main, err := os.ReadFile(filepath.Join(tpl, "main.tf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(main), `network_mode          = "host"`) || strings.Contains(string(main), "host-gateway") {
		t.Fatalf("main.tf is not on the host's network:\n%s", main)
	}
	code, _, stderr = run(t, "render", "-o", tpl)
	if code != 0 || stderr != "" {
		t.Fatalf("default network: exit %d, stderr %q", code, stderr)
	}
}
