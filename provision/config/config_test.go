package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "slots.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleLoadsToTheDefaults(t *testing.T) {
	fromExample, err := Load(writeFile(t, string(Example())), nil)
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromExample, defaults) {
		t.Fatalf("the example differs from the defaults:\nexample:  %+v\ndefaults: %+v", fromExample, defaults)
	}
	if len(defaults.Slots) != 5 || defaults.Slots[4].Name != "e" || defaults.Slots[4].Port != 3005 || defaults.Slots[0].Slug != "slot-a" {
		t.Fatalf("default slots: %+v", defaults.Slots)
	}
}

func TestPrecedenceFlagsOverEnvOverFile(t *testing.T) {
	file := writeFile(t, "app_host: '*.file.example.com'\nadmin:\n  port: 9100\ntemplate:\n  name: from-file\n")
	t.Setenv("SLOTPROV_APP_HOST", "*.env.example.com")
	t.Setenv("SLOTPROV_ADMIN_PORT", "9200")
	t.Setenv("CODER_URL", "https://coder.env.example.com")
	t.Setenv("CODER_SESSION_TOKEN", "tok-env")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--admin-port", "9300", "--image-build-apt-packages", "jq,curl"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(file, fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.Template.Name != "from-file" || c.AppHost != "*.env.example.com" || c.Admin.Port != 9300 {
		t.Fatalf("precedence: name %q app_host %q admin.port %d", c.Template.Name, c.AppHost, c.Admin.Port)
	}
	if c.Coder.URL != "https://coder.env.example.com" || c.Coder.SessionToken != "tok-env" {
		t.Fatalf("coder: %+v", c.Coder)
	}
	if strings.Join(c.Image.Build.AptPackages, " ") != "jq curl" {
		t.Fatalf("apt packages: %q", c.Image.Build.AptPackages)
	}
}

func TestSlotsFromFile(t *testing.T) {
	c, err := Load(writeFile(t, `
slots:
  - name: b
    port: 4002
    share: public
  - name: a
    slug: web
    display_name: Web
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Slots) != 2 {
		t.Fatalf("slots: %+v", c.Slots)
	}
	b, a := c.Slots[0], c.Slots[1]
	if b.Name != "b" || b.Port != 4002 || b.Share != SharePublic || b.Slug != "slot-b" || b.DisplayName != "Slot B" {
		t.Fatalf("slot b: %+v", b)
	}
	if a.Slug != "web" || a.DisplayName != "Web" || a.Port != 3001 {
		t.Fatalf("slot a: %+v", a)
	}
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name, file string
		env        map[string]string
		want       string
	}{
		{"malformed yaml", "slots: [\n  - name: a\n", nil, "slots.yaml: "},
		{"unknown top key", "app_hots: '*.x.io'\n", nil, `app_hots: unknown key (did you mean app_host?)`},
		{"unknown nested key", "admin:\n  prot: 9000\n", nil, `admin.prot: unknown key (did you mean admin.port?)`},
		{"unknown slot key", "slots:\n  - name: a\n    prot: 3001\n", nil, `slots[0].prot: unknown key (did you mean slots[0].port?)`},
		{"slots not a list", "slots: a\n", nil, "slots: want a list of slots"},
		{"slot without name", "slots:\n  - port: 3001\n", nil, "slots[0].name: missing"},
		{"unknown slot", "slots:\n  - name: f\n", nil, `slots[0].name: "f" is not a slot of slotagent (a, b, c, d, e)`},
		{"duplicate slot name", "slots:\n  - name: a\n  - name: a\n    port: 3009\n", nil, `slots[1].name: slot "a" is already slots[0]`},
		{"duplicate port", "slots:\n  - name: a\n  - name: b\n    port: 3001\n", nil, "slots[1].port: 3001 is already used by slots[0].port"},
		{"port clashes with admin", "slots:\n  - name: a\n    port: 9000\n", nil, "slots[0].port: 9000 is already used by admin.port"},
		{"port out of range", "slots:\n  - name: a\n    port: 70000\n", nil, "slots[0].port: 70000 is not a port"},
		{"port not a number", "slots:\n  - name: a\n    port: http\n", nil, "slots[0].port: want a port number"},
		{"numeric slug", "slots:\n  - name: a\n    slug: '8080'\n", nil, `slots[0].slug: "8080" is purely numeric`},
		{"bad slug", "slots:\n  - name: a\n    slug: Slot_A\n", nil, `slots[0].slug: "Slot_A" is not a valid Coder app slug`},
		{"duplicate slug", "slots:\n  - name: a\n    slug: admin\n", nil, `slots[0].slug: "admin" is already used by admin.slug`},
		{"unknown share", "slots:\n  - name: a\n    share: everyone\n", nil, `slots[0].share: "everyone" is not owner, authenticated or public`},
		{"app host without star", "app_host: coder.example.com\n", nil, `app_host: "coder.example.com" must contain exactly one *`},
		{"app host with scheme", "app_host: 'https://*.coder.example.com'\n", nil, `app_host: "https://*.coder.example.com" is not a host name with a wildcard (no scheme`},
		{"app host from env", "", map[string]string{"SLOTPROV_APP_HOST": "apps.example.com"}, `app_host: "apps.example.com" must contain exactly one *`},
		{"agent name starting with a digit", "agent_name: 1st\n", nil, `agent_name: "1st" is not a valid agent name`},
		{"url style", "app_url_style: long\n", nil, `app_url_style: "long" is not`},
		{"template name", "template:\n  name: my template\n", nil, `template.name: "my template" is not a valid Coder name`},
		{"coder url", "", map[string]string{"CODER_URL": "coder.example.com"}, `coder.url: "coder.example.com" is not an http(s) URL`},
		{"image mode", "image:\n  mode: pull\n", nil, `image.mode: "pull" is not`},
		{"image ref", "image:\n  ref: 'Not An Image'\n", nil, `image.ref: "Not An Image" is not an image reference`},
		{"apt package", "image:\n  mode: build\n  build:\n    apt_packages: ['jq; rm -rf /']\n", nil, `image.build.apt_packages[0]: "jq; rm -rf /" is not a Debian package name`},
		{"node major", "image:\n  mode: build\n  build:\n    node_major: 8\n", nil, "image.build.node_major: 8 is not"},
		{"cpus", "resources:\n  cpus: lots\n", nil, `resources.cpus: "lots" is not a positive number`},
		{"admin port type", "admin:\n  port: [1]\n", nil, "admin.port: want a whole number"},
		{"network mode with a space", "docker:\n  network_mode: 'my net'\n", nil, `docker.network_mode: "my net" is not "host" or a Docker network name`},
		{"network mode with shell characters", "", map[string]string{"SLOTPROV_DOCKER_NETWORK_MODE": "host;reboot"}, `docker.network_mode: "host;reboot" is not "host" or a Docker network name`},
		{"network mode container:", "docker:\n  network_mode: 'container:db'\n", nil, `docker.network_mode: "container:db" is not`},
		{"network mode none", "docker:\n  network_mode: none\n", nil, `docker.network_mode: "none" leaves the Coder agent no way to reach Coder`},
		{"stop grace equal to the shutdown timeout", "docker:\n  stop_grace_seconds: 8\n", nil, "docker.stop_grace_seconds: 8 must be above shutdown_timeout_seconds (8)"},
		{"stop grace below a raised shutdown timeout", "shutdown_timeout_seconds: 30\n", nil, "docker.stop_grace_seconds: 15 must be above shutdown_timeout_seconds (30)"},
		{"shutdown timeout zero", "shutdown_timeout_seconds: 0\n", nil, "shutdown_timeout_seconds: 0 is not between 1 and 3600"},
		{"postgres port", "postgres:\n  port: 0\n", nil, "postgres.port: 0 is not a port"},
		{"network mode on kubernetes", "target: kubernetes\ndocker:\n  network_mode: host\n", nil, `docker.network_mode: "host" is for target docker only`},
		{"stop grace on kubernetes", "target: kubernetes\ndocker:\n  stop_grace_seconds: 30\n", nil, "docker.stop_grace_seconds: 30 is for target docker only; a pod's is kubernetes.termination_grace_seconds"},
		{"termination grace", "target: kubernetes\nshutdown_timeout_seconds: 20\n", nil, "kubernetes.termination_grace_seconds: 15 must be above shutdown_timeout_seconds (20), so slotagent's shutdown finishes before Kubernetes kills it"},
		{"target", "target: nomad\n", nil, `target: "nomad" is not "docker", "kubernetes" or "module"`},
		{"target from env", "", map[string]string{"SLOTPROV_TARGET": "k8s"}, `target: "k8s" is not`},
		{"build mode on kubernetes", "target: kubernetes\nimage:\n  mode: build\n", nil, `image.mode: "build" is for target docker only`},
		{"namespace", "kubernetes:\n  namespace: My_NS\n", nil, `kubernetes.namespace: "My_NS" is not a DNS-1123 label`},
		{"namespace from env", "", map[string]string{"SLOTPROV_KUBERNETES_NAMESPACE": "-ws"}, `kubernetes.namespace: "-ws" is not a DNS-1123 label`},
		{"unknown kubernetes key", "kubernetes:\n  namspace: x\n", nil, "kubernetes.namspace: unknown key (did you mean kubernetes.namespace?)"},
		{"storage class", "kubernetes:\n  storage_class: Fast SSD\n", nil, `kubernetes.storage_class: "Fast SSD" is not a DNS-1123 name`},
		{"home size", "kubernetes:\n  home_size: 10GB\n", nil, `kubernetes.home_size: "10GB" is not a positive quantity`},
		{"zero home size", "kubernetes:\n  home_size: '0'\n", nil, `kubernetes.home_size: "0" is not a positive quantity`},
		{"cpu request", "kubernetes:\n  cpu_request: half\n", nil, `kubernetes.cpu_request: "half" is not a positive quantity`},
		{"request above limit", "resources:\n  memory_mb: 512\nkubernetes:\n  memory_request: 1Gi\n", nil, "kubernetes.memory_request: 1Gi is above the memory limit 512Mi"},
		{"label key", "kubernetes:\n  labels:\n    'team name': web\n", nil, `kubernetes.labels.team name: "team name" is not a label or annotation key`},
		{"label prefix", "kubernetes:\n  labels:\n    'Example.com/team': web\n", nil, `kubernetes.labels.Example.com/team: prefix "Example.com" is not a DNS-1123 subdomain`},
		{"label value", "kubernetes:\n  labels:\n    team: 'web front'\n", nil, `kubernetes.labels.team: "web front" is not a label value`},
		{"label not a string", "kubernetes:\n  labels:\n    team: [a]\n", nil, "kubernetes.labels.team: want a string"},
		{"labels not a map", "kubernetes:\n  labels: [a]\n", nil, "kubernetes.labels: want a mapping"},
		{"reserved label", "kubernetes:\n  labels:\n    com.coder.workspace.id: x\n", nil, "kubernetes.labels.com.coder.workspace.id: the template sets this one itself"},
		{"annotation key", "kubernetes:\n  annotations:\n    'a/b/c': x\n", nil, `kubernetes.annotations.a/b/c: "a/b/c" is not a label or annotation key`},
		{"node selector value", "kubernetes:\n  node_selector:\n    disk: 'fast ssd'\n", nil, `kubernetes.node_selector.disk: "fast ssd" is not a label value`},
		{"toleration without key", "kubernetes:\n  tolerations:\n    - operator: Exists\n", nil, "kubernetes.tolerations[0].key: missing"},
		{"toleration without operator", "kubernetes:\n  tolerations:\n    - key: dedicated\n", nil, "kubernetes.tolerations[0].operator: missing (Equal or Exists)"},
		{"toleration operator", "kubernetes:\n  tolerations:\n    - key: dedicated\n      operator: In\n", nil, `kubernetes.tolerations[0].operator: "In" is not Equal or Exists`},
		{"toleration effect", "kubernetes:\n  tolerations:\n    - key: a\n      operator: Exists\n      effect: Evict\n", nil, `kubernetes.tolerations[0].effect: "Evict" is not`},
		{"toleration seconds", "kubernetes:\n  tolerations:\n    - key: a\n      operator: Exists\n      effect: NoSchedule\n      toleration_seconds: 60\n", nil, "kubernetes.tolerations[0].toleration_seconds: only a NoExecute toleration"},
		{"unknown toleration key", "kubernetes:\n  tolerations:\n    - key: a\n      operater: Exists\n", nil, "kubernetes.tolerations[0].operater: unknown key (did you mean kubernetes.tolerations[0].operator?)"},
		{"pull policy", "kubernetes:\n  image_pull_policy: ifnotpresent\n", nil, `kubernetes.image_pull_policy: "ifnotpresent" is not Always, IfNotPresent, Never (or empty: Kubernetes decides)`},
		{"relative kubeconfig", "", map[string]string{"SLOTPROV_KUBERNETES_CONFIG_PATH": "kube/config"}, `kubernetes.config_path: "kube/config" is neither absolute nor under ~/`},
		{"kubeconfig with a newline", "kubernetes:\n  config_path: \"/etc/kube\\nconfig\"\n", nil, `kubernetes.config_path: "/etc/kube\nconfig" has control characters`},
		{"context without a kubeconfig", "kubernetes:\n  config_context: prod\n", nil, `kubernetes.config_context: "prod" needs kubernetes.config_path (in-cluster has no contexts)`},
		{"start timeout", "kubernetes:\n  start_timeout_seconds: 5\n", nil, "kubernetes.start_timeout_seconds: 5 is not between 10 and 3600"},
		{"host network not a bool", "kubernetes:\n  host_network: maybe\n", nil, "kubernetes.host_network: want true or false"},
		{"tolerations not a list", "kubernetes:\n  tolerations: a\n", nil, "kubernetes.tolerations: want a list of tolerations"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			file := ""
			if tc.file != "" {
				file = writeFile(t, tc.file)
			}
			_, err := Load(file, nil)
			if err == nil {
				t.Fatalf("no error; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q; want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if err == nil || !strings.Contains(err.Error(), "nope.yaml does not exist (`slotprov init") {
		t.Fatalf("err = %v", err)
	}
}

func TestWriteExampleRefusesToOverwrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "slots.yaml")
	if err := os.WriteFile(p, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteExample(p, false); err == nil || !strings.Contains(err.Error(), "exists (use --force") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "mine" {
		t.Fatalf("file changed: %q", b)
	}
	if err := WriteExample(p, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != string(Example()) {
		t.Fatal("force did not write the example")
	}
}

// docs/slotprov.md's configuration table lists every key with its environment
// variables and flag.
func TestDocsListEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../docs/slotprov.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, k := range Keys() {
		row := "| `" + k.Name + "` | `" + strings.Join(k.Env, "`, `") + "` | `--" + k.Flag + "` |"
		if !strings.Contains(doc, row) {
			t.Errorf("docs/slotprov.md lacks the row %s", row)
		}
	}
}

func TestSharedPortsWarning(t *testing.T) {
	c, err := Load(writeFile(t, "docker:\n  network_mode: host\npostgres:\n  port: 5544\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if w := c.SharedPorts(); !strings.Contains(w, "ports 9000, 3001, 3002, 3003, 3004, 3005, 5544") {
		t.Fatalf("warning %q does not name every port", w)
	}
	c, err = Load(writeFile(t, "docker:\n  network_mode: slots-net\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if w := c.SharedPorts(); w != "" {
		t.Fatalf("a workspace on its own network got the warning %q", w)
	}
}

// With nothing set, the Terraform CLI config is the environment's
// TF_CLI_CONFIG_FILE, as Terraform would read it; the key wins over it.
func TestTerraformConfigFallsBackToTerraformsEnv(t *testing.T) {
	t.Setenv("TF_CLI_CONFIG_FILE", "/etc/from-env.tfrc")
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.TerraformConfig != "/etc/from-env.tfrc" {
		t.Fatalf("terraform_config = %q, want the environment's", c.TerraformConfig)
	}
	c, err = Load(writeFile(t, "terraform_config: mine.tfrc\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.TerraformConfig != "mine.tfrc" {
		t.Fatalf("terraform_config = %q, want the file's", c.TerraformConfig)
	}
}

// The kubernetes keys: scalars from file, environment or flags; maps and
// tolerations from the file only, with the case of their keys kept.
func TestKubernetesKeys(t *testing.T) {
	defaults, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if defaults.Target != TargetDocker || defaults.Kubernetes.Namespace != "coder" || defaults.Kubernetes.HomeSize != "10Gi" {
		t.Fatalf("defaults: %q %+v", defaults.Target, defaults.Kubernetes)
	}
	t.Setenv("SLOTPROV_KUBERNETES_CPU_REQUEST", "250m")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--kubernetes-memory-request", "512Mi"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(filepath.Join("testdata", "kubernetes.yaml"), fs)
	if err != nil {
		t.Fatal(err)
	}
	sec := 300
	want := Kubernetes{
		Namespace: "workspaces", StorageClass: "fast-ssd", HomeSize: "20Gi", CPURequest: "250m", MemoryRequest: "512Mi",
		ImagePullSecret: "regcred", ServiceAccount: "coder-workspace", TerminationGraceSeconds: 20,
		HostNetwork: true, ImagePullPolicy: "IfNotPresent", ConfigPath: "/etc/coder/kubeconfig", ConfigContext: "staging",
		StartTimeoutSeconds: 120,
		NodeSelector:        map[string]string{"kubernetes.io/arch": "amd64"},
		Tolerations: []Toleration{
			{Key: "dedicated", Operator: "Equal", Value: "coder", Effect: "NoExecute", Seconds: &sec},
			{Key: "gpu", Operator: "Exists"},
		},
		Labels:      map[string]string{"example.com/Team": "Web", "tier": "3"},
		Annotations: map[string]string{"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
	}
	if c.Target != TargetKubernetes || !reflect.DeepEqual(c.Kubernetes, want) {
		t.Fatalf("target %q, kubernetes:\n%+v\nwant\n%+v", c.Target, c.Kubernetes, want)
	}
}

func TestQuantity(t *testing.T) {
	for s, want := range map[string]float64{"10Gi": 10 << 30, "250m": 0.25, "1.5": 1.5, "2k": 2000, "1e3": 1000, ".5Mi": 1 << 19} {
		if got, err := quantity(s); err != nil || got != want {
			t.Errorf("quantity(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "10GB", "Gi", "-1", "1.2.3", "10 Gi"} {
		if _, err := quantity(s); err == nil {
			t.Errorf("quantity(%q): no error", s)
		}
	}
}
