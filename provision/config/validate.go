package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	agentconfig "github.com/coder-slots/coder-slots/agent/config"
)

var (
	// nameRe is Coder's rule for template names (codersdk.NameValid).
	nameRe = regexp.MustCompile(`^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$`)
	// slugRe is Coder's rule for app slugs and agent names, lower case
	// because they become host names.
	slugRe = regexp.MustCompile(`^[a-z0-9](-?[a-z0-9])*$`)
	// hostRe is a host name after its wildcard label, with an optional port.
	hostRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$`)
	// agentRe is slugRe starting with a letter: the agent's name is also
	// the coder_agent resource's name in main.tf.
	agentRe = regexp.MustCompile(`^[a-z](-?[a-z0-9])*$`)
	// labelRe is what may stand beside the * in the wildcard label.
	labelRe = regexp.MustCompile(`^[a-z0-9-]*$`)
	// imageRefRe is a Docker image reference: [host[:port]/]path[:tag][@digest].
	imageRefRe = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$`)
	// aptRe is a Debian package name.
	aptRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	cpusRe = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	// networkRe is a Docker network name.
	networkRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)
)

// Validate checks every setting and returns the first problem, naming its key.
func (c *Config) Validate() error {
	checks := []func() error{c.checkTemplate, c.checkCoder, c.checkApps, c.checkSlots, c.checkImage, c.checkResources, c.checkDocker, c.checkPostgres, c.checkTarget, c.checkKubernetes}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) checkTemplate() error {
	n := c.Template.Name
	if n == "" || len(n) > 32 || !nameRe.MatchString(n) {
		return fmt.Errorf("template.name: %q is not a valid Coder name (1–32 letters, digits and single hyphens)", n)
	}
	return nil
}

func (c *Config) checkCoder() error {
	if c.Coder.URL == "" {
		return nil
	}
	u, err := url.Parse(c.Coder.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("coder.url: %q is not an http(s) URL", c.Coder.URL)
	}
	return nil
}

func (c *Config) checkApps() error {
	if err := CheckAppHost(c.AppHost); err != nil && c.AppHost != "" {
		return fmt.Errorf("app_host: %w", err)
	}
	switch c.AppURLStyle {
	case "", URLStyleAgent, URLStyleShort:
	default:
		return fmt.Errorf("app_url_style: %q is not %q or %q", c.AppURLStyle, URLStyleAgent, URLStyleShort)
	}
	if !agentRe.MatchString(c.AgentName) || len(c.AgentName) > 32 {
		return fmt.Errorf("agent_name: %q is not a valid agent name (a lower-case letter, then letters, digits and single hyphens)", c.AgentName)
	}
	if err := checkPort(c.Admin.Port); err != nil {
		return fmt.Errorf("admin.port: %w", err)
	}
	return checkApp("admin", c.Admin.Slug, c.Admin.DisplayName, c.Admin.Share)
}

// CheckAppHost checks a wildcard app host such as "*.coder.example.com".
func CheckAppHost(h string) error {
	if h == "" {
		return fmt.Errorf("empty (want the deployment's wildcard host, e.g. %q)", "*.coder.example.com")
	}
	if strings.Count(h, "*") != 1 {
		return fmt.Errorf("%q must contain exactly one * (e.g. %q)", h, "*.coder.example.com")
	}
	first, rest, ok := strings.Cut(h, ".")
	if !ok || !strings.Contains(first, "*") {
		return fmt.Errorf("%q: the * must be in the first label (e.g. %q)", h, "*.coder.example.com")
	}
	if !labelRe.MatchString(strings.Replace(first, "*", "", 1)) || !hostRe.MatchString(rest) {
		return fmt.Errorf("%q is not a host name with a wildcard (no scheme, lower case, e.g. %q)", h, "*.coder.example.com")
	}
	return nil
}

func checkApp(key, slug, display, share string) error {
	if !slugRe.MatchString(slug) || len(slug) > 32 {
		return fmt.Errorf("%s.slug: %q is not a valid Coder app slug (lower-case letters, digits and single hyphens)", key, slug)
	}
	if _, err := strconv.Atoi(slug); err == nil {
		return fmt.Errorf("%s.slug: %q is purely numeric; Coder would take it for a port", key, slug)
	}
	if display == "" {
		return fmt.Errorf("%s.display_name: empty", key)
	}
	switch share {
	case ShareOwner, ShareAuthenticated, SharePublic:
	default:
		return fmt.Errorf("%s.share: %q is not %s, %s or %s", key, share, ShareOwner, ShareAuthenticated, SharePublic)
	}
	return nil
}

func checkPort(p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("%d is not a port (1–65535)", p)
	}
	return nil
}

func (c *Config) checkSlots() error {
	if len(c.Slots) == 0 {
		return fmt.Errorf("slots: empty (want at least one of %s)", strings.Join(agentconfig.SlotNames, ", "))
	}
	names := map[string]int{}
	slugs := map[string]string{c.Admin.Slug: "admin.slug"}
	ports := map[int]string{c.Admin.Port: "admin.port"}
	for i, s := range c.Slots {
		key := fmt.Sprintf("slots[%d]", i)
		if !agentconfig.ValidSlot(s.Name) {
			return fmt.Errorf("%s.name: %q is not a slot of slotagent (%s)", key, s.Name, strings.Join(agentconfig.SlotNames, ", "))
		}
		if j, dup := names[s.Name]; dup {
			return fmt.Errorf("%s.name: slot %q is already slots[%d]", key, s.Name, j)
		}
		names[s.Name] = i
		if err := checkApp(key, s.Slug, s.DisplayName, s.Share); err != nil {
			return err
		}
		if other, dup := slugs[s.Slug]; dup {
			return fmt.Errorf("%s.slug: %q is already used by %s", key, s.Slug, other)
		}
		slugs[s.Slug] = key + ".slug"
		if err := checkPort(s.Port); err != nil {
			return fmt.Errorf("%s.port: %w", key, err)
		}
		if other, dup := ports[s.Port]; dup {
			return fmt.Errorf("%s.port: %d is already used by %s", key, s.Port, other)
		}
		ports[s.Port] = key + ".port"
	}
	return nil
}

func (c *Config) checkImage() error {
	im := c.Image
	if !imageRefRe.MatchString(im.Ref) {
		return fmt.Errorf("image.ref: %q is not an image reference (e.g. ghcr.io/acme/coder-slots:1.0)", im.Ref)
	}
	switch im.Mode {
	case ImagePrebuilt:
		return nil
	case ImageBuild:
	default:
		return fmt.Errorf("image.mode: %q is not %q or %q", im.Mode, ImagePrebuilt, ImageBuild)
	}
	if im.Build.Base != "" && !imageRefRe.MatchString(im.Build.Base) {
		return fmt.Errorf("image.build.base: %q is not an image reference", im.Build.Base)
	}
	if im.Build.NodeMajor < 18 || im.Build.NodeMajor > 99 {
		return fmt.Errorf("image.build.node_major: %d is not a Node.js major version (18 or later)", im.Build.NodeMajor)
	}
	for i, p := range im.Build.AptPackages {
		if !aptRe.MatchString(p) {
			return fmt.Errorf("image.build.apt_packages[%d]: %q is not a Debian package name", i, p)
		}
	}
	return nil
}

func (c *Config) checkResources() error {
	if c.Resources.CPUs != "" {
		if f, err := strconv.ParseFloat(c.Resources.CPUs, 64); !cpusRe.MatchString(c.Resources.CPUs) || err != nil || f <= 0 {
			return fmt.Errorf("resources.cpus: %q is not a positive number of CPUs", c.Resources.CPUs)
		}
	}
	if m := c.Resources.MemoryMB; m != 0 && m < 128 {
		return fmt.Errorf("resources.memory_mb: %d is below 128 MiB (0 = no limit)", m)
	}
	return nil
}

func (c *Config) checkDocker() error {
	if t := c.ShutdownTimeoutSeconds; t < 1 || t > 3600 {
		return fmt.Errorf("shutdown_timeout_seconds: %d is not between 1 and 3600", t)
	}
	if c.Target == TargetKubernetes {
		return nil // checkTarget refuses the Docker-only settings
	}
	if err := c.checkGrace("docker.stop_grace_seconds", c.Docker.StopGraceSeconds, "Docker"); err != nil {
		return err
	}
	switch m := c.Docker.NetworkMode; {
	case m == "" || m == NetworkHost:
	case m == "none":
		return fmt.Errorf("docker.network_mode: %q leaves the Coder agent no way to reach Coder", m)
	case !networkRe.MatchString(m):
		return fmt.Errorf("docker.network_mode: %q is not %q or a Docker network name (letters, digits, '_', '.', '-')", m, NetworkHost)
	}
	return nil
}

// checkGrace checks how long the engine waits after its SIGTERM before it
// kills the workspace: above shutdown_timeout_seconds, so slotagent's
// orderly shutdown finishes first, and at most an hour.
func (c *Config) checkGrace(key string, grace int, engine string) error {
	if grace <= c.ShutdownTimeoutSeconds || grace > 3600 {
		return fmt.Errorf("%s: %d must be above shutdown_timeout_seconds (%d), so slotagent's shutdown finishes before %s kills it, and at most 3600", key, grace, c.ShutdownTimeoutSeconds, engine)
	}
	return nil
}

func (c *Config) checkPostgres() error {
	if err := checkPort(c.Postgres.Port); err != nil {
		return fmt.Errorf("postgres.port: %w", err)
	}
	return nil
}

// SharedPorts is the warning for a workspace on the Docker host's network:
// every port slotagent listens on is the host's, shared by every workspace
// there. Empty when the workspace has a network of its own.
func (c *Config) SharedPorts() string {
	if c.Docker.NetworkMode != NetworkHost {
		return ""
	}
	ports := []string{strconv.Itoa(c.Admin.Port)}
	for _, s := range c.Slots {
		ports = append(ports, strconv.Itoa(s.Port))
	}
	if c.Postgres.Enabled {
		ports = append(ports, strconv.Itoa(c.Postgres.Port))
	}
	return fmt.Sprintf("docker.network_mode is host: the workspace listens on the Docker host's ports %s, so two workspaces of this template on one Docker host collide (give each its own ports, or use a Docker network)", strings.Join(ports, ", "))
}
