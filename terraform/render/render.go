// Package render turns a slotprov configuration into a Coder template
// directory: main.tf (written with hclwrite, formatted with hclwrite.Format
// and parsed back as a check) and, when the image is built by the template,
// build/Dockerfile. The same configuration always gives the same bytes.
package render

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	agentconfig "github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/images"
	"github.com/coder-slots/coder-slots/provision/config"
)

// Provider versions: the template's constraints, matching the releases the
// local mirror is built from (scripts/tf-mirror.sh).
const (
	CoderProviderVersion  = "~> 2.20"
	DockerProviderVersion = "~> 4.6"
)

// File names inside the template directory.
const (
	MainTF     = "main.tf"
	Dockerfile = "build/Dockerfile"
)

// Template variables that `push` fills from the deployment.
const (
	VarAppHost     = "app_host"
	VarAppURLStyle = "app_url_style"
)

// HomeDir is the workspace user's home, on the home volume.
const HomeDir = "/home/coder"

// Files renders the template directory's files, by relative path.
func Files(c *config.Config) (map[string][]byte, error) {
	files := map[string][]byte{}
	if c.Image.Mode == config.ImageBuild {
		df, err := images.Render(c.Image, c.Postgres.Enabled)
		if err != nil {
			return nil, err
		}
		files[Dockerfile] = df
	}
	tf, err := MainFile(c)
	if err != nil {
		return nil, err
	}
	files[MainTF] = tf
	return files, nil
}

// MainFile renders main.tf.
func MainFile(c *config.Config) ([]byte, error) {
	w := newWriter(c.AgentName)
	b := w.file.Body()
	comment(b,
		"Rendered by slotprov from slots.yaml: change slots.yaml and run",
		"`slotprov render` again rather than editing this file.",
		"",
		"A coder-slots workspace: slotagent is the container's entrypoint and runs",
		"the Coder agent, an admin panel and the deployment slots, each slot a",
		"subdomain app with its own URL.")
	b.AppendNewline()
	w.terraformBlock(b, c)
	w.variables(b, c)
	w.dataSources(b, c)
	w.locals(b, c)
	w.agentBlock(b, c)
	w.apps(b, c)
	if c.Target == config.TargetKubernetes {
		w.kubernetesResources(b, c)
	} else {
		w.volume(b)
		w.image(b, c)
		w.container(b, c)
	}
	w.outputs(b)
	if w.err != nil {
		return nil, w.err
	}
	out := hclwrite.Format(w.file.Bytes())
	if _, diags := hclparse.NewParser().ParseHCL(out, MainTF); diags.HasErrors() {
		return nil, fmt.Errorf("render: main.tf does not parse: %s", diags.Error())
	}
	return out, nil
}

func (w *writer) terraformBlock(b *hclwrite.Body, c *config.Config) {
	tb := b.AppendNewBlock("terraform", nil).Body()
	attrs(tb, "required_version", str(">= 1.5"))
	rp := tb.AppendNewBlock("required_providers", nil).Body()
	provider := func(source, version string) hclwrite.Tokens {
		return lit(cty.ObjectVal(map[string]cty.Value{"source": cty.StringVal(source), "version": cty.StringVal(version)}))
	}
	attrs(rp, "coder", provider("coder/coder", CoderProviderVersion))
	if c.Target == config.TargetKubernetes {
		attrs(rp, "kubernetes", provider("hashicorp/kubernetes", kubernetesProviderVersion(c)))
	} else {
		attrs(rp, "docker", provider("kreuzwerker/docker", DockerProviderVersion))
	}
	b.AppendNewline()
}

func (w *writer) variables(b *hclwrite.Body, c *config.Config) {
	style := c.AppURLStyle
	if style == "" {
		style = config.URLStyleAgent
	}
	v := b.AppendNewBlock("variable", []string{VarAppHost}).Body()
	attrs(v,
		"type", w.expr("string"),
		"description", str(`The deployment's wildcard app host (CODER_WILDCARD_ACCESS_URL without the scheme), e.g. "*.coder.example.com".`),
		"default", str(c.AppHost))
	val := v.AppendNewBlock("validation", nil).Body()
	attrs(val,
		"condition", w.expr(`length(regexall("^[a-z0-9-]*\\*[a-z0-9-]*(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+(:[0-9]+)?$", var.app_host)) == 1`),
		"error_message", str(`app_host must be the deployment's wildcard app host with one * in its first label, such as "*.coder.example.com".`))
	b.AppendNewline()

	v = b.AppendNewBlock("variable", []string{VarAppURLStyle}).Body()
	attrs(v,
		"type", w.expr("string"),
		"description", str(`Subdomain app URLs: "agent" is {slug}--{agent}--{workspace}--{owner} (every Coder version), "short" is {slug}--{workspace}--{owner} (Coder 2.27 and later).`),
		"default", str(style))
	val = v.AppendNewBlock("validation", nil).Body()
	attrs(val,
		"condition", w.expr(`contains(["agent", "short"], var.app_url_style)`),
		"error_message", str(`app_url_style must be "agent" or "short".`))
	b.AppendNewline()

	if c.Target == config.TargetKubernetes {
		w.kubernetesVariables(b, c)
		return
	}
	v = b.AppendNewBlock("variable", []string{"docker_socket"}).Body()
	attrs(v,
		"type", w.expr("string"),
		"description", str("The Docker daemon the provisioner talks to; empty: the default socket."),
		"default", str(""))
	b.AppendNewline()

	p := b.AppendNewBlock("provider", []string{"docker"}).Body()
	attrs(p, "host", w.expr(`var.docker_socket != "" ? var.docker_socket : null`))
	b.AppendNewline()
}

func (w *writer) dataSources(b *hclwrite.Body, c *config.Config) {
	for _, name := range []string{"coder_provisioner", "coder_workspace", "coder_workspace_owner"} {
		d := b.AppendNewBlock("data", []string{name, "me"}).Body()
		if name == "coder_workspace" && c.Target == config.TargetKubernetes {
			w.clusterPreconditions(d)
		}
	}
	b.AppendNewline()
}

// AdminApp is the admin panel's coder_app name and key in local.app_urls.
const AdminApp = "admin"

// slotKey is a slot's coder_app name and key in local.app_urls.
func slotKey(s config.Slot) string { return "slot_" + s.Name }

func (w *writer) locals(b *hclwrite.Body, c *config.Config) {
	slugs := map[string]string{AdminApp: c.Admin.Slug}
	for _, s := range c.Slots {
		slugs[slotKey(s)] = s.Slug
	}
	l := b.AppendNewBlock("locals", nil).Body()
	attrs(l,
		"workspace", w.expr("lower(data.coder_workspace.me.name)"),
		"owner", w.expr("lower(data.coder_workspace_owner.me.name)"),
		"agent_name", str(c.AgentName),
		"app_slugs", strMap(slugs),
		"url_scheme", w.expr(`split("://", data.coder_workspace.me.access_url)[0]`),
		"app_host_name", w.expr(`split(":", var.app_host)[0]`),
		// Coder adds the access URL's port when the app host has none.
		"app_port", w.expr(`length(split(":", var.app_host)) > 1 ? ":${split(":", var.app_host)[1]}" : (contains([80, 443], data.coder_workspace.me.access_port) ? "" : ":${data.coder_workspace.me.access_port}")`),
		"host_suffix", w.expr(`var.app_url_style == "short" ? "--${local.workspace}--${local.owner}" : "--${local.agent_name}--${local.workspace}--${local.owner}"`),
		"app_hosts", w.expr(`{ for k, slug in local.app_slugs : k => replace(local.app_host_name, "*", "${slug}${local.host_suffix}") }`),
		"app_urls", w.expr(`{ for k, host in local.app_hosts : k => "${local.url_scheme}://${host}${local.app_port}" }`),
		// DNS allows 63 characters in a label; Coder's app host name is one label.
		"long_app_hosts", w.expr(`[for host in values(local.app_hosts) : host if length(split(".", host)[0]) > 63]`),
	)
	// The agent's init script reaches Coder on localhost from the host's
	// point of view; inside a Docker container that is host.docker.internal.
	// On the host's network, localhost is the host's already; a pod reaches
	// Coder at its access URL, as Coder's own Kubernetes template does.
	initScript := "AGENT.init_script"
	if c.Target != config.TargetKubernetes && c.Docker.NetworkMode != config.NetworkHost {
		initScript = `replace(AGENT.init_script, "/localhost|127\\.0\\.0\\.1/", "host.docker.internal")`
	}
	attrs(l,
		"workspace_env", w.envTokens(c),
		"container_env", w.expr(`merge(local.workspace_env, {
			CODER_AGENT_TOKEN       = AGENT.token
			CODER_AGENT_INIT_SCRIPT = `+initScript+`
		})`))
	b.AppendNewline()
}

// envTokens is the container's environment besides the agent's token and
// init script: the URLs, host names and ports slotagent serves on, the
// workspace's name, and whether it runs the workspace PostgreSQL.
func (w *writer) envTokens(c *config.Config) hclwrite.Tokens {
	type item struct {
		name string
		val  hclwrite.Tokens
	}
	items := []item{
		{"ADMIN_PORT", str(strconv.Itoa(c.Admin.Port))},
		{"ADMIN_URL", w.expr(`local.app_urls["admin"]`)},
		// slotagent git-remote and the slot pages name the workspace's ssh
		// host (coder.<workspace>) with it, as Coder's agent does for its
		// sessions.
		{"CODER_WORKSPACE_NAME", w.expr("data.coder_workspace.me.name")},
	}
	for _, s := range c.Slots {
		up := "SLOT_" + strings.ToUpper(s.Name)
		key := hclwrite.TokensForValue(cty.StringVal(slotKey(s)))
		items = append(items,
			item{up + "_PORT", str(strconv.Itoa(s.Port))},
			item{up + "_SUBDOMAIN", index(w.expr("local.app_hosts"), key)},
			item{up + "_URL", index(w.expr("local.app_urls"), key)},
		)
	}
	pg := agentconfig.PostgresOff
	if c.Postgres.Enabled {
		pg = agentconfig.PostgresOn
	}
	items = append(items,
		item{"SLOTAGENT_POSTGRES_ENABLED", str(pg)},
		item{"SLOTAGENT_POSTGRES_PORT", str(strconv.Itoa(c.Postgres.Port))},
		// The same number the container's stop grace is checked against.
		item{"SLOTAGENT_SHUTDOWN_TIMEOUT", str(strconv.Itoa(c.ShutdownTimeoutSeconds) + "s")},
	)
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.name, b.name) })
	var objItems []hclwrite.ObjectAttrTokens
	for _, it := range items {
		objItems = append(objItems, hclwrite.ObjectAttrTokens{Name: hclwrite.TokensForIdentifier(it.name), Value: it.val})
	}
	return hclwrite.TokensForObject(objItems)
}

// index is base[key].
func index(base, key hclwrite.Tokens) hclwrite.Tokens {
	out := append(hclwrite.Tokens{}, base...)
	out = append(out, &hclwrite.Token{Type: hclsyntax.TokenOBrack, Bytes: []byte("[")})
	out = append(out, key...)
	return append(out, &hclwrite.Token{Type: hclsyntax.TokenCBrack, Bytes: []byte("]")})
}

func (w *writer) agentBlock(b *hclwrite.Body, c *config.Config) {
	a := b.AppendNewBlock("resource", []string{"coder_agent", c.AgentName}).Body()
	attrs(a,
		"arch", w.expr("data.coder_provisioner.me.arch"),
		"os", str("linux"),
		"dir", str(HomeDir))
	for i, s := range c.Slots {
		m := a.AppendNewBlock("metadata", nil).Body()
		attrs(m,
			"display_name", str(s.DisplayName),
			"key", str(slotKey(s)),
			"order", num(i+1),
			"script", str("slotagent status --metadata "+s.Name),
			"interval", num(10),
			"timeout", num(5))
	}
	lc := a.AppendNewBlock("lifecycle", nil).Body()
	pc := lc.AppendNewBlock("precondition", nil).Body()
	attrs(pc,
		"condition", w.expr("length(local.long_app_hosts) == 0"),
		"error_message", w.expr(`"These app host names have a first label longer than DNS's 63 characters: ${join(", ", local.long_app_hosts)}. Use a shorter workspace name, owner name, slot slug or agent name, or app_url_style = \"short\"."`))
	b.AppendNewline()
}

func (w *writer) apps(b *hclwrite.Body, c *config.Config) {
	adminHealth := fmt.Sprintf("http://127.0.0.1:%d", c.Admin.Port)
	w.app(b, AdminApp, c.Admin.Slug, c.Admin.DisplayName, c.Admin.Icon, c.Admin.Share, c.Admin.Port, adminHealth+"/healthz", 0)
	for i, s := range c.Slots {
		w.app(b, slotKey(s), s.Slug, s.DisplayName, s.Icon, s.Share, s.Port, adminHealth+"/api/slots/"+s.Name+"/health", i+1)
	}
}

func (w *writer) app(b *hclwrite.Body, name, slug, display, icon, share string, port int, health string, order int) {
	a := b.AppendNewBlock("resource", []string{"coder_app", name}).Body()
	attrs(a,
		"agent_id", w.expr("AGENT.id"),
		"slug", str(slug),
		"display_name", str(display),
		// 127.0.0.1, not localhost: slotagent listens on IPv4 loopback.
		"url", str(fmt.Sprintf("http://127.0.0.1:%d", port)),
		"icon", str(icon),
		"subdomain", lit(cty.True),
		"share", str(share),
		"order", num(order))
	h := a.AppendNewBlock("healthcheck", nil).Body()
	attrs(h, "url", str(health), "interval", num(5), "threshold", num(6))
	b.AppendNewline()
}

func (w *writer) labels(b *hclwrite.Body) {
	for _, l := range []struct{ label, value string }{
		{"coder.owner", "data.coder_workspace_owner.me.name"},
		{"coder.owner_id", "data.coder_workspace_owner.me.id"},
		{"coder.workspace_id", "data.coder_workspace.me.id"},
		{"coder.workspace_name", "data.coder_workspace.me.name"},
	} {
		lb := b.AppendNewBlock("labels", nil).Body()
		attrs(lb, "label", str(l.label), "value", w.expr(l.value))
	}
}

func (w *writer) volume(b *hclwrite.Body) {
	v := b.AppendNewBlock("resource", []string{"docker_volume", "home"}).Body()
	attrs(v, "name", w.expr(`"coder-${data.coder_workspace.me.id}-home"`))
	comment(v, "The home volume outlives the container: slotagent's state, releases and logs live on it.")
	lc := v.AppendNewBlock("lifecycle", nil).Body()
	attrs(lc, "ignore_changes", w.expr("all"))
	w.labels(v)
	b.AppendNewline()
}

func (w *writer) image(b *hclwrite.Body, c *config.Config) {
	im := b.AppendNewBlock("resource", []string{"docker_image", "workspace"}).Body()
	if c.Image.Mode == config.ImageBuild {
		attrs(im, "name", w.expr(`"coder-slots-${data.coder_workspace.me.id}"`))
		bb := im.AppendNewBlock("build", nil).Body()
		attrs(bb, "context", w.expr(`"${path.module}/build"`))
		attrs(im, "triggers", w.expr(`{ dockerfile_sha1 = filesha1("${path.module}/build/Dockerfile") }`))
	} else {
		attrs(im, "name", str(c.Image.Ref))
	}
	attrs(im, "keep_locally", lit(cty.True))
	b.AppendNewline()
}

func (w *writer) container(b *hclwrite.Body, c *config.Config) {
	ct := b.AppendNewBlock("resource", []string{"docker_container", "workspace"}).Body()
	attrs(ct,
		"count", w.expr("data.coder_workspace.me.start_count"),
		"image", w.expr("docker_image.workspace.image_id"),
		"name", w.expr(`"coder-${local.owner}-${local.workspace}"`),
		"hostname", w.expr("data.coder_workspace.me.name"),
		"entrypoint", lit(cty.ListVal([]cty.Value{cty.StringVal(images.Entrypoint[0]), cty.StringVal(images.Entrypoint[1])})),
		"env", w.expr(`[for k, v in local.container_env : "${k}=${v}"]`))
	if c.Resources.CPUs != "" {
		attrs(ct, "cpus", str(c.Resources.CPUs))
	}
	if c.Resources.MemoryMB > 0 {
		attrs(ct, "memory", num(c.Resources.MemoryMB))
	}
	// Without a grace the docker provider stops the container with a 0 s
	// timeout, i.e. SIGKILL, and slotagent's orderly shutdown never runs.
	attrs(ct, "destroy_grace_seconds", num(c.Docker.StopGraceSeconds))
	if c.Docker.NetworkMode != "" {
		attrs(ct, "network_mode", str(c.Docker.NetworkMode))
	}
	if c.Docker.NetworkMode != config.NetworkHost {
		h := ct.AppendNewBlock("host", nil).Body()
		attrs(h, "host", str("host.docker.internal"), "ip", str("host-gateway"))
	}
	v := ct.AppendNewBlock("volumes", nil).Body()
	attrs(v,
		"container_path", str(HomeDir),
		"volume_name", w.expr("docker_volume.home.name"),
		"read_only", lit(cty.False))
	w.labels(ct)
	b.AppendNewline()
}

func (w *writer) outputs(b *hclwrite.Body) {
	o := b.AppendNewBlock("output", []string{"app_urls"}).Body()
	attrs(o, "description", str("Each app's URL, by coder_app name."), "value", w.expr("local.app_urls"))
	b.AppendNewline()
	o = b.AppendNewBlock("output", []string{"workspace_env"}).Body()
	attrs(o, "description", str("The container's environment besides the agent's token and init script."), "value", w.expr("local.workspace_env"))
	b.AppendNewline()
	o = b.AppendNewBlock("output", []string{"container_env_names"}).Body()
	attrs(o, "description", str("The names of every variable in the container's environment."), "value", w.expr("keys(local.container_env)"))
}
