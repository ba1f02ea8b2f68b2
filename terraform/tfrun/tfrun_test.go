package tfrun

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/provision/config"
	"github.com/coder-slots/coder-slots/terraform/render"
	"github.com/coder-slots/coder-slots/terraform/tfmirror"
)

// template renders a config (the defaults, app host *.coder.example.com,
// then yaml) into a new directory.
func template(t *testing.T, yaml string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "slots.yaml")
	if err := os.WriteFile(file, []byte("app_host: '*.coder.example.com'\n"+yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := render.Files(c)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "template")
	if err := render.Write(dir, files, false); err != nil {
		t.Fatal(err)
	}
	return dir
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// untouched checks that terraform left nothing in the template directory.
func untouched(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{".terraform", ".terraform.lock.hcl", "terraform.tfstate"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s appeared in the template directory", name)
		}
	}
}

func TestValidateRealTerraform(t *testing.T) {
	r := Runner{CLIConfig: tfmirror.Require(t)}
	// The machine may point TF_CLI_CONFIG_FILE at a file that does not exist;
	// the runner must pass its own.
	t.Setenv("TF_CLI_CONFIG_FILE", filepath.Join(t.TempDir(), "missing.tfrc"))
	for _, yaml := range []string{
		"",
		"\nimage:\n  mode: build\n  ref: ghcr.io/acme/ws:1.0\npostgres:\n  enabled: true\nresources:\n  cpus: '2'\n  memory_mb: 4096\n",
		kubernetesYAML(t),
	} {
		dir := template(t, yaml)
		if err := r.Validate(ctx(t), dir); err != nil {
			t.Fatal(err)
		}
		untouched(t, dir)
	}
}

func TestValidateErrors(t *testing.T) {
	rc := tfmirror.Require(t)
	dir := template(t, "")
	main := filepath.Join(dir, render.MainTF)
	good, _ := os.ReadFile(main)

	os.WriteFile(main, []byte(strings.Replace(string(good), "resource \"coder_app\" \"admin\" {", "resource \"coder_app\" \"admin\" {{", 1)), 0o644)
	err := Runner{CLIConfig: rc}.Validate(ctx(t), dir)
	if err == nil || !strings.HasPrefix(err.Error(), "syntax: ") || !strings.Contains(err.Error(), "main.tf:") {
		t.Fatalf("syntax error: %v", err)
	}

	os.WriteFile(main, []byte(strings.Replace(string(good), "subdomain    = true", "subdomian    = true", 1)), 0o644)
	err = Runner{CLIConfig: rc}.Validate(ctx(t), dir)
	if err == nil || !strings.Contains(err.Error(), "terraform validate: main.tf:") || !strings.Contains(err.Error(), "subdomian") {
		t.Fatalf("invalid attribute: %v", err)
	}

	os.WriteFile(main, good, 0o644)
	err = Runner{Terraform: "terraform-that-is-not-there", CLIConfig: rc}.Validate(ctx(t), dir)
	if err == nil || !strings.Contains(err.Error(), `"terraform-that-is-not-there" not found on PATH`) {
		t.Fatalf("no terraform: %v", err)
	}
	err = Runner{CLIConfig: filepath.Join(t.TempDir(), "nope.tfrc")}.Validate(ctx(t), dir)
	if err == nil || !strings.Contains(err.Error(), "nope.tfrc: no such file or directory (the local provider mirror's is written by `make tf-mirror`)") {
		t.Fatalf("missing CLI config: %v", err)
	}
	// A mirror without the providers: init fails and says why, on one line.
	empty := filepath.Join(t.TempDir(), "empty.tfrc")
	os.WriteFile(empty, []byte("provider_installation {\n  filesystem_mirror {\n    path = \""+t.TempDir()+"\"\n  }\n}\n"), 0o644)
	err = Runner{CLIConfig: empty}.Validate(ctx(t), dir)
	if err == nil || !strings.HasPrefix(err.Error(), "terraform init: ") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("empty mirror: %v", err)
	}
	untouched(t, dir)
}

func TestPlanDevAlice(t *testing.T) {
	dir := template(t, "")
	s, err := Runner{CLIConfig: tfmirror.Require(t)}.Plan(ctx(t), dir, Workspace{Name: "dev", Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	untouched(t, dir)
	if len(s.Apps) != 6 || s.Apps[0].Name != "admin" || s.Apps[5].Name != "slot_e" {
		t.Fatalf("apps: %+v", s.Apps)
	}
	for _, a := range s.Apps {
		letter := strings.TrimPrefix(a.Name, "slot_")
		wantURL := "https://" + a.Slug + "--main--dev--alice.coder.example.com"
		if a.URL != wantURL || !a.Subdomain || a.Share != "owner" {
			t.Errorf("%s: url %q subdomain %t share %q; want %q", a.Name, a.URL, a.Subdomain, a.Share, wantURL)
		}
		wantHealth := "http://127.0.0.1:9000/api/slots/" + letter + "/health"
		if a.Name == "admin" {
			wantHealth = "http://127.0.0.1:9000/healthz"
		}
		if a.Healthcheck != wantHealth {
			t.Errorf("%s: healthcheck %q; want %q", a.Name, a.Healthcheck, wantHealth)
		}
	}
	if s.Env["ADMIN_URL"] != "https://admin--main--dev--alice.coder.example.com" ||
		s.Env["SLOT_C_URL"] != "https://slot-c--main--dev--alice.coder.example.com" ||
		s.Env["SLOT_C_SUBDOMAIN"] != "slot-c--main--dev--alice.coder.example.com" ||
		s.Env["SLOT_E_PORT"] != "3005" || s.Env["ADMIN_PORT"] != "9000" || s.Env["SLOTAGENT_POSTGRES_ENABLED"] != "true" {
		t.Fatalf("env: %v", s.Env)
	}
	for _, name := range []string{"CODER_AGENT_TOKEN", "CODER_AGENT_INIT_SCRIPT", "ADMIN_URL", "SLOT_A_URL", "SLOT_A_SUBDOMAIN", "SLOT_A_PORT"} {
		if !slices.Contains(s.EnvNames, name) {
			t.Errorf("env names lack %s: %v", name, s.EnvNames)
		}
	}
	if s.Container == nil || !slices.Equal(s.Container.Entrypoint, []string{"slotagent", "run"}) ||
		s.Container.Name != "coder-alice-dev" || s.Container.Image != "coder-slots/workspace:latest" {
		t.Fatalf("container: %+v", s.Container)
	}
	if want := "coder-" + derivedUUID("workspace/alice/dev") + "-home"; s.HomeVolume != want {
		t.Fatalf("home volume %q; want %q", s.HomeVolume, want)
	}
	text := s.Text()
	for _, want := range []string{"Workspace dev of alice (start)", "CODER_AGENT_TOKEN (known after the build)", "SLOT_A_URL=https://slot-a--main--dev--alice.coder.example.com"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}

func TestPlanStyleAndPorts(t *testing.T) {
	dir := template(t, "\napp_url_style: short\n")
	s, err := Runner{CLIConfig: tfmirror.Require(t)}.Plan(ctx(t), dir, Workspace{Name: "Dev", Owner: "alice", AccessURL: "http://coder.internal:7080", Transition: "stop"})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Env["SLOT_B_URL"]; got != "http://slot-b--dev--alice.coder.example.com:7080" {
		t.Fatalf("SLOT_B_URL = %q", got)
	}
	if s.Container != nil {
		t.Fatalf("a stopped workspace has a container: %+v", s.Container)
	}
}

func TestPlanBuildMode(t *testing.T) {
	dir := template(t, "\nimage:\n  mode: build\n  ref: ghcr.io/acme/ws:1.0\n")
	s, err := Runner{CLIConfig: tfmirror.Require(t)}.Plan(ctx(t), dir, Workspace{Name: "dev", Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "coder-slots-" + derivedUUID("workspace/alice/dev"); s.Container == nil || s.Container.Image != want {
		t.Fatalf("container %+v; want image %s", s.Container, want)
	}
}

func TestPlanRefusesLongHostLabels(t *testing.T) {
	dir := template(t, "")
	_, err := Runner{CLIConfig: tfmirror.Require(t)}.Plan(ctx(t), dir, Workspace{
		Name: "a-rather-long-workspace-name-here", Owner: "someone-with-a-long-name"})
	if err == nil || !strings.Contains(err.Error(), "Resource precondition failed") ||
		!strings.Contains(err.Error(), "first label longer than DNS's 63 characters: admin--main--a-rather-long-workspace-name-here--someone-with-a-long-name.coder.example.com") ||
		strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v", err)
	}
	// The short style fits.
	dir = template(t, "\napp_url_style: short\n")
	if _, err := (Runner{CLIConfig: tfmirror.Require(t)}).Plan(ctx(t), dir, Workspace{
		Name: "a-rather-long-workspace-name", Owner: "someone-long"}); err != nil {
		t.Fatal(err)
	}
}

func TestPlanNeedsAnAppHost(t *testing.T) {
	c, err := config.Load("", nil) // the defaults: no app host
	if err != nil {
		t.Fatal(err)
	}
	files, err := render.Files(c)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := render.Write(dir, files, false); err != nil {
		t.Fatal(err)
	}
	_, err = Runner{CLIConfig: tfmirror.Require(t)}.Plan(ctx(t), dir, Workspace{Name: "dev", Owner: "alice"})
	if err == nil || !strings.Contains(err.Error(), "app_host must be the deployment's wildcard app host") {
		t.Fatalf("err = %v", err)
	}
	if _, err := (Runner{}).Plan(ctx(t), dir, Workspace{Name: "dev"}); err == nil || !strings.Contains(err.Error(), "--owner") {
		t.Fatalf("no owner: %v", err)
	}
	// What push gives the variables (plan --app-host) fills the gap.
	s, err := Runner{CLIConfig: tfmirror.Require(t)}.Plan(ctx(t), dir, Workspace{Name: "dev", Owner: "alice",
		Variables: map[string]string{render.VarAppHost: "*.apps.example.net", render.VarAppURLStyle: "short"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Env["SLOT_A_URL"]; got != "https://slot-a--dev--alice.apps.example.net" {
		t.Fatalf("SLOT_A_URL = %q", got)
	}
}

// A relative CLI config is the working directory's file, not one inside
// the scratch copy Terraform runs in.
func TestRelativeCLIConfig(t *testing.T) {
	rc := tfmirror.Require(t)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, rc)
	if err != nil || filepath.IsAbs(rel) {
		t.Fatalf("no relative path to %s: %v", rc, err)
	}
	dir := template(t, "")
	if err := (Runner{CLIConfig: rel}).Validate(ctx(t), dir); err != nil {
		t.Fatalf("validate with %s: %v", rel, err)
	}
}

// kubernetesYAML is the config package's sample with every kubernetes key
// that the local provider (1.13.4) can validate.
func kubernetesYAML(t *testing.T) string {
	b, err := os.ReadFile("../../provision/config/testdata/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// kubeconfig writes a kubeconfig for a cluster that is not there and
// points the kubernetes templates that tests render at it: the provider
// reads it, and a plan of new resources makes no API call.
func kubeconfig(t *testing.T) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	conf := `apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: staging, context: {cluster: none, user: none}}]
current-context: staging
`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLOTPROV_KUBERNETES_CONFIG_PATH", path)
}

// On Kubernetes, workspace dev of alice gets the same apps and environment
// as on Docker, in a Deployment with a home PVC; planned offline, with no
// cluster.
func TestPlanDevAliceKubernetes(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no ~/.kube/config
	t.Setenv("KUBECONFIG", "")
	kubeconfig(t)
	rc := tfmirror.Require(t)
	// The sample switches PostgreSQL off.
	docker, err := Runner{CLIConfig: rc}.Plan(ctx(t), template(t, "postgres:\n  enabled: false\n"), Workspace{Name: "dev", Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	dir := template(t, kubernetesYAML(t))
	s, err := Runner{CLIConfig: rc}.Plan(ctx(t), dir, Workspace{Name: "dev", Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	untouched(t, dir)
	if !reflect.DeepEqual(s.Apps, docker.Apps) || !reflect.DeepEqual(s.Env, docker.Env) || !slices.Equal(s.EnvNames, docker.EnvNames) {
		t.Fatalf("kubernetes and docker differ:\napps %+v\n     %+v\nenv %v\n    %v\nnames %v\n      %v", s.Apps, docker.Apps, s.Env, docker.Env, s.EnvNames, docker.EnvNames)
	}
	want := &Container{Name: "coder-alice-dev", Namespace: "workspaces", Image: "registry.example.com/acme/coder-slots:1.4.0", Entrypoint: []string{"slotagent", "run"}}
	if s.Target != config.TargetKubernetes || !reflect.DeepEqual(s.Container, want) {
		t.Fatalf("target %q, container %+v; want %+v", s.Target, s.Container, want)
	}
	if want := "coder-" + derivedUUID("workspace/alice/dev") + "-home"; s.HomeVolume != want {
		t.Fatalf("home PVC %q; want %q", s.HomeVolume, want)
	}
	text := s.Text()
	for _, want := range []string{"Deployment coder-alice-dev in namespace workspaces (1 replica), image registry.example.com/acme/coder-slots:1.4.0, command [\"slotagent\" \"run\"]", "Home PVC coder-", "SLOT_A_URL=https://slot-a--main--dev--alice.coder.example.com"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}

	// Stopped: the Deployment stays, with no pod; the PVC stays.
	s, err = Runner{CLIConfig: rc}.Plan(ctx(t), dir, Workspace{Name: "dev", Owner: "alice", Transition: "stop"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Container != nil || s.HomeVolume == "" || !strings.Contains(s.Text(), "No pod (the workspace is stopped") {
		t.Fatalf("stopped: container %+v, home %q", s.Container, s.HomeVolume)
	}
}

// The 63-character precondition is the agent's, the same on Kubernetes.
func TestPlanRefusesLongHostLabelsKubernetes(t *testing.T) {
	kubeconfig(t)
	dir := template(t, "target: kubernetes\n")
	_, err := Runner{CLIConfig: tfmirror.Require(t)}.Plan(ctx(t), dir, Workspace{
		Name: "a-rather-long-workspace-name-here", Owner: "someone-with-a-long-name"})
	if err == nil || !strings.Contains(err.Error(), "first label longer than DNS's 63 characters") {
		t.Fatalf("err = %v", err)
	}
}

// A template that finds no cluster fails the plan with a line naming the
// setting to change, before the provider dials anything (hashicorp/kubernetes
// 1.13.4 would otherwise talk to localhost:80).
func TestPlanWithoutACluster(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBECONFIG", "")
	rc := tfmirror.Require(t)
	if _, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/token"); err == nil {
		t.Skip("this test runs in a Kubernetes pod: in-cluster would work")
	}
	_, err := Runner{CLIConfig: rc}.Plan(ctx(t), template(t, "target: kubernetes\n"), Workspace{Name: "dev", Owner: "alice"})
	if err == nil || !strings.Contains(err.Error(), "kube_config_path is empty (in-cluster), but Coder's provisioner runs in no Kubernetes pod") {
		t.Fatalf("in-cluster outside a pod: %v", err)
	}
	t.Setenv("SLOTPROV_KUBERNETES_CONFIG_PATH", "~/.kube/lab-config")
	_, err = Runner{CLIConfig: rc}.Plan(ctx(t), template(t, "target: kubernetes\n"), Workspace{Name: "dev", Owner: "alice"})
	if err == nil || !strings.Contains(err.Error(), `No kubeconfig at "~/.kube/lab-config" on Coder's provisioner`) || strings.Contains(err.Error(), "localhost") {
		t.Fatalf("a kubeconfig that is not there: %v", err)
	}
}
