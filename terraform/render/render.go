// Package render turns a slotprov configuration into a Coder template
// directory: main.tf (written with hclwrite, formatted with hclwrite.Format
// and parsed back as a check) and, when the image is built by the template,
// build/Dockerfile. The same configuration always gives the same bytes.
package render

import (
	"fmt"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

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

// Files renders the template directory's files, by relative path; for
// target module, the module's files.
func Files(c *config.Config) (map[string][]byte, error) {
	if c.Target == config.TargetModule {
		return moduleFiles(c)
	}
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
	w.appHostVariables(b, c)
	if c.Target == config.TargetKubernetes {
		w.kubernetesVariables(b, c)
		return
	}
	v := b.AppendNewBlock("variable", []string{"docker_socket"}).Body()
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
	l := b.AppendNewBlock("locals", nil).Body()
	w.appLocals(l, templateValues(c))
	// The agent's init script reaches Coder on localhost from the host's
	// point of view; inside a Docker container that is host.docker.internal.
	// On the host's network, localhost is the host's already; a pod reaches
	// Coder at its access URL, as Coder's own Kubernetes template does.
	initScript := "AGENT.init_script"
	if c.Target != config.TargetKubernetes && c.Docker.NetworkMode != config.NetworkHost {
		initScript = `replace(AGENT.init_script, "/localhost|127\\.0\\.0\\.1/", "host.docker.internal")`
	}
	attrs(l,
		"container_env", w.expr(`merge(local.workspace_env, {
			CODER_AGENT_TOKEN       = AGENT.token
			CODER_AGENT_INIT_SCRIPT = `+initScript+`
		})`))
	b.AppendNewline()
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
	w.longHostsCheck(a)
	b.AppendNewline()
}

func (w *writer) apps(b *hclwrite.Body, c *config.Config) {
	adminHealth := fmt.Sprintf("http://127.0.0.1:%d", c.Admin.Port)
	w.app(b, appSpec{
		name: AdminApp, agentID: w.expr("AGENT.id"), slug: str(c.Admin.Slug), display: str(c.Admin.DisplayName),
		url: str(fmt.Sprintf("http://127.0.0.1:%d", c.Admin.Port)), icon: str(c.Admin.Icon), share: str(c.Admin.Share),
		order: num(0), health: str(adminHealth + "/healthz"),
	})
	for i, s := range c.Slots {
		w.app(b, appSpec{
			name: slotKey(s), agentID: w.expr("AGENT.id"), slug: str(s.Slug), display: str(s.DisplayName),
			url: str(fmt.Sprintf("http://127.0.0.1:%d", s.Port)), icon: str(s.Icon), share: str(s.Share),
			order: num(i + 1), health: str(adminHealth + "/api/slots/" + s.Name + "/health"),
		})
	}
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
