package render

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/provision/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// kubernetesYAML is the config package's sample with every kubernetes key.
func kubernetesYAML(t *testing.T) string {
	b, err := os.ReadFile("../../provision/config/testdata/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func load(t *testing.T, yaml string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "slots.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const buildYAML = `
app_host: "*--apps.coder.example.com:8443"
app_url_style: short
agent_name: dev
admin:
  port: 9100
  slug: panel
  share: authenticated
slots:
  - name: c
    slug: web
    port: 4000
    display_name: "Web \"front\" ${not.interpolated}"
    share: public
  - name: a
image:
  mode: build
  ref: ghcr.io/acme/coder-slots:1.4.0
  build:
    node_major: 24
    apt_packages: [jq]
resources:
  cpus: "1.5"
  memory_mb: 2048
postgres:
  enabled: true
`

// hostNetYAML is a workspace on the Docker host's network (the e2e test's
// setting), with its own stop grace, shutdown timeout and PostgreSQL port.
const hostNetYAML = `
app_host: "*.coder.localhost:7080"
docker:
  network_mode: host
  stop_grace_seconds: 20
shutdown_timeout_seconds: 12
postgres:
  port: 5544
`

func TestGolden(t *testing.T) {
	cases := map[string]string{
		"default":            string(config.Example()),
		"build":              buildYAML,
		"hostnet":            hostNetYAML,
		"kubernetes":         "app_host: '*.coder.example.com'\n" + kubernetesYAML(t),
		"kubernetes-default": "app_host: '*.coder.example.com'\ntarget: kubernetes\n",
		"module":             "target: module\n",
		// buildYAML's apps as a module, PostgreSQL off.
		"module-host": "target: module\n" + buildYAML[:strings.Index(buildYAML, "image:")] + "postgres:\n  enabled: false\n",
	}
	for name, yaml := range cases {
		t.Run(name, func(t *testing.T) {
			c := load(t, yaml)
			c.Release = "v0.9.0"
			files, err := Files(c)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Files(c)
			if err != nil {
				t.Fatal(err)
			}
			for f, b := range files {
				if !bytes.Equal(again[f], b) {
					t.Fatalf("%s: two renders of the same config differ", f)
				}
				if f == RunScript || f == StopScript {
					continue // the scripts as they are in this package
				}
				golden(t, name+"."+strings.ReplaceAll(f, "/", "_")+".golden", b)
			}
			if _, ok := files[Dockerfile]; ok != (name == "build") {
				t.Fatalf("build/Dockerfile present: %t", ok)
			}
			for _, f := range []string{MainTF, VariablesTF, OutputsTF} {
				if b, ok := files[f]; ok {
					terraformFmt(t, b)
				}
			}
		})
	}
}

// The template literal in a display name must stay a literal: the value
// goes through hclwrite.TokensForValue, which escapes ${.
func TestValuesAreEscaped(t *testing.T) {
	b, err := MainFile(load(t, buildYAML))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `display_name = "Web \"front\" $${not.interpolated}"`) {
		t.Fatalf("display name not escaped:\n%s", b)
	}
}

// terraformFmt checks that terraform's own formatter leaves main.tf as it is.
func terraformFmt(t *testing.T, main []byte) {
	t.Helper()
	tf, err := exec.LookPath("terraform")
	if err != nil {
		t.Fatal("terraform is not on PATH")
	}
	cmd := exec.Command(tf, "fmt", "-no-color", "-")
	cmd.Stdin = bytes.NewReader(main)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("terraform fmt: %v", err)
	}
	if !bytes.Equal(out, main) {
		t.Fatalf("terraform fmt changes main.tf:\n%s", out)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the golden file (go test -update if intended):\n%s", path, got)
	}
}

func TestWriteRefusesAForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Write(dir, map[string][]byte{MainTF: []byte("x")}, false)
	if err == nil || !strings.Contains(err.Error(), "exists and is not a previous render") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("something was written: %v", entries)
	}
	if err := Write(dir, map[string][]byte{MainTF: []byte("x")}, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "notes.txt")); string(b) != "mine" {
		t.Fatal("--force touched a file that is not part of the render")
	}
}

func TestWriteRefusesAForgedMarker(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, Marker), []byte("../../etc/passwd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, map[string][]byte{MainTF: []byte("x")}, false); err == nil || !strings.Contains(err.Error(), "is not a slotprov marker") {
		t.Fatalf("err = %v", err)
	}
}

func TestRerenderReplacesItsOwnFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tpl")
	if err := Write(dir, map[string][]byte{MainTF: []byte("one"), Dockerfile: []byte("FROM x")}, false); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(dir, ".terraform.lock.hcl")
	if err := os.WriteFile(lock, []byte("# lock"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, map[string][]byte{MainTF: []byte("two")}, false); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, MainTF)); string(b) != "two" {
		t.Fatalf("main.tf = %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "build")); !os.IsNotExist(err) {
		t.Fatalf("the stale build/ folder is still there: %v", err)
	}
	if _, err := os.Stat(lock); err != nil {
		t.Fatal("a file that is not part of the render was removed")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Fatalf("temporary file left: %s", e.Name())
		}
	}
}

// The kubernetes render has the same agent, apps, locals and container
// environment as the Docker one, and Coder's labels; none of the Docker
// resources. By default: in-cluster, a bounded wait for the rollout, and
// neither host network nor a pull policy.
func TestKubernetesSharesTheWorkspace(t *testing.T) {
	docker, err := MainFile(load(t, "app_host: '*.coder.example.com'\n"))
	if err != nil {
		t.Fatal(err)
	}
	k8s, err := MainFile(load(t, "app_host: '*.coder.example.com'\ntarget: kubernetes\n"))
	if err != nil {
		t.Fatal(err)
	}
	shared := func(main []byte) string {
		s := string(main)
		// The data sources differ: on Kubernetes coder_workspace checks
		// that there is a cluster to find.
		start := strings.Index(s, "data \"coder_workspace_owner\"")
		end := strings.Index(s, "  container_env = merge(")
		rest := s[end:]
		return s[start:end] + rest[:strings.Index(rest, "CODER_AGENT_INIT_SCRIPT")] + s[strings.Index(s, "resource \"coder_agent\""):strings.LastIndex(s, "resource \"coder_app\"")]
	}
	if shared(docker) != shared(k8s) {
		t.Fatalf("the agent, apps or environment differ between the targets:\n%s\n----\n%s", shared(docker), shared(k8s))
	}
	main := string(k8s)
	for _, want := range append([]string{
		`CODER_AGENT_INIT_SCRIPT = coder_agent.main.init_script`,
		`replicas                  = data.coder_workspace.me.start_count`,
		`progress_deadline_seconds = 300`,
		`wait_for_rollout = true`,
		`create = "360s"`,
		`config_path    = var.kube_config_path`,
		`default     = ""`,
		`: fileexists("/var/run/secrets/kubernetes.io/serviceaccount/token")`,
		`type = "Recreate"`,
		`command = ["slotagent", "run"]`,
		`for_each = local.container_env`,
		`wait_until_bound = false`,
		`source  = "hashicorp/kubernetes"`,
		`version = "` + KubernetesProviderVersion + `"`,
	}, config.CoderLabels...) {
		if !strings.Contains(main, want) {
			t.Errorf("the kubernetes main.tf lacks %q", want)
		}
	}
	for _, docker := range []string{"docker", "host.docker.internal", "host_network", "image_pull_policy"} {
		if strings.Contains(main, docker) {
			t.Errorf("the kubernetes main.tf mentions %q", docker)
		}
	}
}

// Requests and limits exist only as maps from provider 2.0 on (blocks in
// 1.x): set, they narrow the constraint to 2.x.
func TestKubernetesContainerResources(t *testing.T) {
	c := load(t, "app_host: '*.coder.example.com'\ntarget: kubernetes\nresources:\n  cpus: '1.5'\n  memory_mb: 2048\nkubernetes:\n  cpu_request: 250m\n")
	b, err := MainFile(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`version = "` + KubernetesProviderVersionResources + `"`,
		"limits = {\n              \"cpu\"    = \"1.5\"\n              \"memory\" = \"2048Mi\"\n            }",
		"requests = {\n              \"cpu\" = \"250m\"\n            }",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("main.tf lacks %q:\n%s", want, b)
		}
	}
	if !ContainerResourcesNeed2x(c) || ContainerResourcesNeed2x(load(t, "target: kubernetes\n")) || ContainerResourcesNeed2x(load(t, "resources:\n  cpus: '1'\n")) {
		t.Fatal("ContainerResourcesNeed2x")
	}
}
