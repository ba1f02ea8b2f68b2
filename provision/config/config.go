// Package config loads and validates slotprov's settings: the slots.yaml
// file, overridden by SLOTPROV_* environment variables (and CODER_URL /
// CODER_SESSION_TOKEN, the names the coder CLI uses), overridden by flags.
// Every error names the offending key.
package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Share levels Coder accepts for a coder_app.
const (
	ShareOwner         = "owner"
	ShareAuthenticated = "authenticated"
	SharePublic        = "public"
)

// App URL styles: "agent" is {slug}--{agent}--{workspace}--{owner}, which
// every Coder version accepts; "short" is {slug}--{workspace}--{owner}, which
// Coder makes from v2.27 on.
const (
	URLStyleAgent = "agent"
	URLStyleShort = "short"
)

// Image modes.
const (
	ImagePrebuilt = "prebuilt"
	ImageBuild    = "build"
)

// Config is everything slotprov needs to render and push the template.
type Config struct {
	Template Template
	Coder    Coder
	// AppHost is the deployment's wildcard app host, e.g. "*.coder.example.com".
	// Empty: `push` asks the deployment.
	AppHost string
	// AppURLStyle is URLStyleAgent, URLStyleShort or empty (push decides from
	// the deployment's version; render and plan use URLStyleAgent).
	AppURLStyle string
	// AgentName is the coder_agent's name, part of the app URLs.
	AgentName string
	Admin     Admin
	Slots     []Slot
	Image     Image
	Resources Resources
	Postgres  Postgres
	Docker    Docker
	// ShutdownTimeoutSeconds bounds slotagent's orderly shutdown
	// (SLOTAGENT_SHUTDOWN_TIMEOUT in the container).
	ShutdownTimeoutSeconds int
	// Target is TargetDocker, TargetKubernetes or TargetModule.
	Target     string
	Kubernetes Kubernetes
	// TerraformConfig is the Terraform CLI config file validate and plan
	// use (TF_CLI_CONFIG_FILE), e.g. the local provider mirror's.
	TerraformConfig string
	// Release is the coder-slots release whose slotagent a rendered
	// module installs by default; not a setting: slotprov's own version.
	Release string
}

// Template names the Coder template.
type Template struct {
	Name        string
	Description string
}

// Coder is where `push` goes.
type Coder struct {
	URL          string
	SessionToken string
	// Organization is the organization's name; empty: the user's default.
	Organization string
}

// Admin is the admin panel app.
type Admin struct {
	Port        int
	Slug        string
	DisplayName string
	Icon        string
	Share       string
}

// Slot is one deployment slot and its Coder app.
type Slot struct {
	// Name is the agent's slot (a–e).
	Name string
	// Slug is the coder_app slug, part of the slot's URL.
	Slug        string
	Port        int
	DisplayName string
	Icon        string
	Share       string
}

// Image is the workspace container's image.
type Image struct {
	// Mode is ImagePrebuilt (use Ref) or ImageBuild (build a small
	// Dockerfile in the template, taking slotagent from Ref).
	Mode string
	// Ref is the workspace image built from images/Dockerfile.
	Ref   string
	Build Build
}

// Build configures the Dockerfile rendered into the template in build mode.
type Build struct {
	// Base is the Debian-based image with Node.js to start from; empty:
	// node:<NodeMajor>-bookworm-slim.
	Base        string
	NodeMajor   int
	AptPackages []string
}

// BaseImage is the image the build-mode Dockerfile starts from.
func (b Build) BaseImage() string {
	if b.Base != "" {
		return b.Base
	}
	return fmt.Sprintf("node:%d-bookworm-slim", b.NodeMajor)
}

// Resources limits the workspace container (on Kubernetes: its limits);
// zero means no limit.
type Resources struct {
	// CPUs is a Docker CPU quota such as "2" or "1.5"; empty: none.
	CPUs string
	// MemoryMB is the memory limit in MiB.
	MemoryMB int
}

// Postgres switches the workspace's local PostgreSQL on.
type Postgres struct {
	Enabled bool
	// Port is the server's port on 127.0.0.1 (SLOTAGENT_POSTGRES_PORT).
	Port int
}

// NetworkHost is the Docker network mode in which the workspace shares the
// Docker host's network.
const NetworkHost = "host"

// Docker configures the workspace container on a Docker host.
type Docker struct {
	// StopGraceSeconds is how long Docker waits after SIGTERM before it
	// kills the container on a stop (destroy_grace_seconds): above
	// ShutdownTimeoutSeconds, so slotagent's orderly shutdown finishes.
	StopGraceSeconds int
	// NetworkMode is empty (Docker's default network), NetworkHost, or the
	// name of an existing Docker network.
	NetworkMode string
}

// Key is one scalar setting: its key in slots.yaml, environment variables,
// flag name, default and meaning.
type Key struct {
	Name    string
	Env     []string
	Flag    string
	Default any
	Help    string
}

// Keys lists every scalar setting (the slots list is file-only).
func Keys() []Key {
	k := func(name string, def any, help string, extraEnv ...string) Key {
		env := append([]string{"SLOTPROV_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(name))}, extraEnv...)
		return Key{Name: name, Env: env, Flag: strings.NewReplacer(".", "-", "_", "-").Replace(name), Default: def, Help: help}
	}
	return []Key{
		k("template.name", "coder-slots", "Coder template name"),
		k("template.description", "A workspace with an admin panel and five deployment slots", "template description"),
		k("coder.url", "", "Coder deployment URL (push)", "CODER_URL"),
		k("coder.session_token", "", "Coder session token (push); keep it in the environment", "CODER_SESSION_TOKEN"),
		k("coder.organization", "", "organization name (push); empty: your default organization"),
		k("app_host", "", `wildcard app host, e.g. "*.coder.example.com"; empty: push asks the deployment`),
		k("app_url_style", "", `"agent" ({slug}--{agent}--{workspace}--{owner}), "short" ({slug}--{workspace}--{owner}, Coder >= 2.27) or empty (push decides; render uses "agent")`),
		k("agent_name", "main", "coder_agent name"),
		k("admin.port", 9000, "admin panel port (ADMIN_PORT)"),
		k("admin.slug", "admin", "admin panel app slug"),
		k("admin.display_name", "Slots admin", "admin panel app name"),
		k("admin.icon", "/icon/widgets.svg", "admin panel app icon"),
		k("admin.share", ShareOwner, "admin panel share level: owner, authenticated or public"),
		k("image.mode", ImagePrebuilt, `"prebuilt" (use image.ref) or "build" (a Dockerfile in the template)`),
		k("image.ref", "coder-slots/workspace:latest", "workspace image built from images/Dockerfile (build mode takes slotagent from it)"),
		k("image.build.base", "", "build mode: base image with Node.js; empty: node:<node_major>-bookworm-slim"),
		k("image.build.node_major", 24, "build mode: Node.js major version"),
		k("image.build.apt_packages", []string{}, "build mode: extra Debian packages"),
		k("resources.cpus", "", `CPU limit, e.g. "2" or "1.5"; empty: none`),
		k("resources.memory_mb", 0, "memory limit in MiB; 0: none"),
		k("postgres.enabled", true, "run the workspace PostgreSQL (slotagent's SLOTAGENT_POSTGRES_ENABLED); build mode installs it"),
		k("postgres.port", 5432, "the workspace PostgreSQL's port on 127.0.0.1 (SLOTAGENT_POSTGRES_PORT)"),
		k("shutdown_timeout_seconds", 8, "bound on slotagent's orderly shutdown in seconds (SLOTAGENT_SHUTDOWN_TIMEOUT)"),
		k("docker.stop_grace_seconds", 15, "seconds Docker waits after SIGTERM before it kills the container on a stop (destroy_grace_seconds); above shutdown_timeout_seconds"),
		k("docker.network_mode", "", `the container's Docker network: empty (Docker's default), "host" (the Docker host's network), or an existing network's name`),
		k("target", TargetDocker, `"docker" (a container and a volume on Coder's Docker host), "kubernetes" (a Deployment and a PersistentVolumeClaim) or "module" (a Terraform module that adds the slots to a template you have)`),
		k("kubernetes.namespace", "coder", "kubernetes: the namespace variable's default (the namespace must exist)"),
		k("kubernetes.storage_class", "", "kubernetes: the home PVC's storage class; empty: the cluster's default"),
		k("kubernetes.home_size", "10Gi", "kubernetes: the home PVC's size (a quantity)"),
		k("kubernetes.cpu_request", "", `kubernetes: CPU request, e.g. "250m"; empty: none (the limit is resources.cpus)`),
		k("kubernetes.memory_request", "", `kubernetes: memory request, e.g. "512Mi"; empty: none (the limit is resources.memory_mb)`),
		k("kubernetes.image_pull_secret", "", "kubernetes: the secret the pod pulls image.ref with; empty: none"),
		k("kubernetes.service_account", "", "kubernetes: the pod's service account; empty: the namespace's default"),
		k("kubernetes.termination_grace_seconds", 15, "kubernetes: seconds Kubernetes waits after SIGTERM before it kills the pod (termination_grace_period_seconds); above shutdown_timeout_seconds"),
		k("kubernetes.host_network", false, "kubernetes: the pod on its node's network (its ports are the node's), for clusters where the pod must reach Coder on the node; DNS policy ClusterFirstWithHostNet"),
		k("kubernetes.image_pull_policy", "", `kubernetes: "Always", "IfNotPresent" (e.g. images loaded on the nodes) or "Never"; empty: Kubernetes decides (Always for a :latest tag)`),
		k("kubernetes.config_path", "", "kubernetes: the kubeconfig file Coder's provisioner reads (the kube_config_path variable's default; push sets it too); empty: in-cluster, the provisioner's service account"),
		k("kubernetes.config_context", "", "kubernetes: the kubeconfig context (kube_config_context); empty: the file's current context"),
		k("kubernetes.start_timeout_seconds", 300, "kubernetes: how long a build waits for the pod to be available before it fails (an image that cannot be pulled, a volume that never binds)"),
		k("terraform_config", "", "Terraform CLI config for validate and plan (TF_CLI_CONFIG_FILE), e.g. .cache/tf-mirror/terraformrc"),
	}
}

// slotKeys are the keys of one entry of the slots list.
var slotKeys = []string{"name", "slug", "port", "display_name", "icon", "share"}

// AddFlags adds a flag for every scalar setting to fs (string, int, bool
// or string list, as the default), for Load to read.
func AddFlags(fs *pflag.FlagSet) {
	for _, k := range Keys() {
		help := k.Help + " (" + k.Name + ", $" + k.Env[0] + ")"
		switch d := k.Default.(type) {
		case string:
			fs.String(k.Flag, "", help)
		case int:
			fs.Int(k.Flag, 0, help)
		case bool:
			fs.Bool(k.Flag, false, help)
		case []string:
			fs.StringSlice(k.Flag, nil, help)
		default:
			panic(fmt.Sprintf("config: key %s has a default of type %T", k.Name, d))
		}
	}
}

// Load reads the settings: flags that were set (fs may be nil) override the
// environment, which overrides file (may be empty: defaults only), which
// overrides the defaults. The result is validated.
func Load(file string, fs *pflag.FlagSet) (*Config, error) {
	v := viper.New()
	for _, k := range Keys() {
		v.SetDefault(k.Name, k.Default)
		if err := v.BindEnv(append([]string{k.Name}, k.Env...)...); err != nil {
			return nil, fmt.Errorf("config: bind %s: %w", k.Name, err)
		}
		if fs != nil {
			if f := fs.Lookup(k.Flag); f != nil && f.Changed {
				if err := v.BindPFlag(k.Name, f); err != nil {
					return nil, fmt.Errorf("config: bind --%s: %w", k.Flag, err)
				}
			}
		}
	}
	var fileOnly map[string]any
	if file != "" {
		if err := readFile(v, file); err != nil {
			return nil, err
		}
		var err error
		if fileOnly, err = readFileOnly(file); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	c, err := decode(v, fileOnly)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

func readFile(v *viper.Viper, file string) error {
	if _, err := os.Stat(file); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("config: %s does not exist (`slotprov init -o %s` writes an example)", file, file)
		}
		return fmt.Errorf("config: %w", err)
	}
	v.SetConfigFile(file)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		return fmt.Errorf("config: %s: %s", file, oneLine(err.Error()))
	}
	if err := checkKnown(v); err != nil {
		return fmt.Errorf("config: %s: %w", file, err)
	}
	return nil
}

// checkKnown reports the first key slotprov does not know, with the known
// key it most resembles.
func checkKnown(v *viper.Viper) error {
	known := []string{"slots"}
	for _, k := range Keys() {
		known = append(known, k.Name)
	}
	keys := v.AllKeys()
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(known, k) && !knownFileOnly(k) {
			return unknownKey(k, append(known, fileOnlyMaps...))
		}
	}
	if err := checkTolerationKeys(v.Get(keyTolerations)); err != nil {
		return err
	}
	raw, ok := v.Get("slots").([]any)
	if v.IsSet("slots") && !ok {
		return errors.New("slots: want a list of slots")
	}
	for i, item := range raw {
		m, ok := item.(map[string]any)
		if !ok {
			return fmt.Errorf("slots[%d]: want a mapping with name, port, …", i)
		}
		names := make([]string, 0, len(m))
		for name := range m {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			if !slices.Contains(slotKeys, strings.ToLower(name)) {
				return unknownKey(fmt.Sprintf("slots[%d].%s", i, name), prefixed(fmt.Sprintf("slots[%d].", i), slotKeys))
			}
		}
	}
	return nil
}

func prefixed(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	return out
}

func unknownKey(key string, known []string) error {
	if s := closest(key, known); s != "" {
		return fmt.Errorf("%s: unknown key (did you mean %s?)", key, s)
	}
	return fmt.Errorf("%s: unknown key", key)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
