package render

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	agentconfig "github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/provision/config"
)

// File names of a rendered module.
const (
	VariablesTF = "variables.tf"
	OutputsTF   = "outputs.tf"
	ReadmeMD    = "README.md"
	RunScript   = "run.sh"
	StopScript  = "stop.sh"
)

// ReleaseDownload is where the project's releases are downloaded from: a
// release's archives and SHA256SUMS are under ReleaseDownload/<tag>/ (the
// layout `make dist` writes into dist/).
const ReleaseDownload = "https://github.com/coder-slots/coder-slots/releases/download"

// ArchPlaceholder in install_url stands for the workspace's CPU (amd64 or
// arm64); the module's script replaces it.
const ArchPlaceholder = "{arch}"

// DistArchive is the name of a release archive, as `make dist` names it.
func DistArchive(release, arch string) string {
	return "slotagent_" + strings.TrimPrefix(release, "v") + "_linux_" + arch + ".tar.gz"
}

// DefaultInstallURL is the module's default install_url for a release.
func DefaultInstallURL(release string) string {
	return ReleaseDownload + "/" + release + "/" + DistArchive(release, ArchPlaceholder)
}

//go:embed run.sh
var runScript []byte

//go:embed stop.sh
var stopScript []byte

// moduleFiles renders the module's files.
func moduleFiles(c *config.Config) (map[string][]byte, error) {
	files := map[string][]byte{RunScript: runScript, StopScript: stopScript, ReadmeMD: moduleReadme(c)}
	for name, write := range map[string]func(*writer, *hclwrite.Body, *config.Config){
		MainTF:      (*writer).moduleMain,
		VariablesTF: (*writer).moduleVariables,
		OutputsTF:   (*writer).moduleOutputs,
	} {
		w := &writer{file: hclwrite.NewEmptyFile()}
		write(w, w.file.Body(), c)
		if w.err != nil {
			return nil, w.err
		}
		out := hclwrite.Format(w.file.Bytes())
		if _, diags := hclparse.NewParser().ParseHCL(out, name); diags.HasErrors() {
			return nil, fmt.Errorf("render: %s does not parse: %s", name, diags.Error())
		}
		files[name] = out
	}
	return files, nil
}

func (w *writer) moduleMain(b *hclwrite.Body, c *config.Config) {
	comment(b,
		"Rendered by slotprov from slots.yaml (`slotprov render --target module`).",
		"",
		"coder-slots as a module: an admin panel and deployment slots in a",
		"workspace of a template you already have. A coder_script installs",
		"slotagent when it is missing and starts it as a service beside the",
		"Coder agent; each slot is a subdomain app with its own URL.")
	b.AppendNewline()
	tb := b.AppendNewBlock("terraform", nil).Body()
	attrs(tb, "required_version", str(">= 1.5"))
	rp := tb.AppendNewBlock("required_providers", nil).Body()
	attrs(rp, "coder", lit(cty.ObjectVal(map[string]cty.Value{"source": cty.StringVal("coder/coder"), "version": cty.StringVal(CoderProviderVersion)})))
	b.AppendNewline()
	for _, name := range []string{"coder_workspace", "coder_workspace_owner"} {
		b.AppendNewBlock("data", []string{name, "me"})
	}
	b.AppendNewline()

	defaults := map[string]cty.Value{}
	for _, s := range c.Slots {
		defaults[s.Name] = cty.ObjectVal(map[string]cty.Value{
			"slug": cty.StringVal(s.Slug), "port": cty.NumberIntVal(int64(s.Port)),
			"display_name": cty.StringVal(s.DisplayName), "icon": cty.StringVal(s.Icon), "share": cty.StringVal(s.Share),
		})
	}
	l := b.AppendNewBlock("locals", nil).Body()
	attrs(l,
		// slots.yaml's slots with the template admin's changes from var.slots.
		"slot_defaults", lit(cty.ObjectVal(defaults)),
		"slots", w.expr(`{ for k, d in local.slot_defaults : k => merge(d, { for a, v in try(var.slots[k], {}) : a => v if v != null }) }`))
	w.appLocals(l, appValues{
		agentName:    w.expr("var.agent_name"),
		slugs:        w.expr(`merge({ admin = var.slug }, { for k, s in local.slots : "slot_${k}" => s.slug })`),
		adminPort:    w.expr("tostring(var.port)"),
		slots:        c.Slots,
		slotPort:     func(s config.Slot) hclwrite.Tokens { return w.expr(`tostring(local.slots["` + s.Name + `"].port)`) },
		postgres:     w.expr("var.postgres"),
		postgresPort: w.expr("tostring(var.postgres_port)"),
		shutdown:     w.expr(`"${var.shutdown_timeout_seconds}s"`),
	})
	attrs(l,
		// One instance of the module per workspace: the script tells a
		// second one (other slugs or ports) from a re-run of its own.
		"instance", w.expr(`substr(sha256(jsonencode([var.agent_name, var.slug, var.port, local.slots, var.data_dir])), 0, 16)`),
		// The script's settings reach it base64-encoded, so no value is
		// ever read as shell syntax.
		"script_settings", w.expr(`{
			SLOTS_INSTALL_URL    = var.install_url
			SLOTS_INSTALL_SHA256 = var.install_sha256
			SLOTS_INSTANCE       = local.instance
		}`))
	b.AppendNewline()

	r := b.AppendNewBlock("resource", []string{"coder_env", "slotagent"}).Body()
	comment(r, "slotagent's settings, in the agent's environment: the service the",
		"script starts and `slotagent` in every session read them.")
	attrs(r,
		"for_each", w.expr("local.workspace_env"),
		"agent_id", w.expr("var.agent_id"),
		"name", w.expr("each.key"),
		"value", w.expr("each.value"))
	b.AppendNewline()
	r = b.AppendNewBlock("resource", []string{"coder_env", "data_dir"}).Body()
	attrs(r,
		"count", w.expr(`var.data_dir != "" ? 1 : 0`),
		"agent_id", w.expr("var.agent_id"),
		"name", str("SLOTAGENT_DATA_DIR"),
		"value", w.expr("var.data_dir"))
	b.AppendNewline()

	r = b.AppendNewBlock("resource", []string{"coder_script", "slotagent"}).Body()
	attrs(r,
		"agent_id", w.expr("var.agent_id"),
		"display_name", str("coder-slots"),
		"icon", w.expr("var.icon"),
		"run_on_start", lit(cty.True),
		"start_blocks_login", lit(cty.False),
		"script", w.expr(`join("", concat(["#!/bin/sh\n"], [for k, v in local.script_settings : "${k}='${base64encode(v)}'\n"], [file("${path.module}/run.sh")]))`))
	w.longHostsCheck(r)
	b.AppendNewline()

	r = b.AppendNewBlock("resource", []string{"coder_script", "slotagent_stop"}).Body()
	comment(r, "A clean stop when the workspace stops, if the container's stop grace",
		"lets the Coder agent run its stop scripts (destroy_grace_seconds on Docker).")
	attrs(r,
		"agent_id", w.expr("var.agent_id"),
		"display_name", str("coder-slots stop"),
		"icon", w.expr("var.icon"),
		"run_on_stop", lit(cty.True),
		"script", w.expr(`file("${path.module}/stop.sh")`))
	b.AppendNewline()

	health := func(path string) hclwrite.Tokens { return w.expr(`"http://127.0.0.1:${var.port}` + path + `"`) }
	w.app(b, appSpec{
		name: AdminApp, agentID: w.expr("var.agent_id"), slug: w.expr("var.slug"), display: w.expr("var.display_name"),
		url: health(""), icon: w.expr("var.icon"), share: w.expr("var.share"), order: w.expr("var.order"),
		group: w.expr("var.group"), health: health("/healthz"),
	})
	for i, s := range c.Slots {
		slot := func(attr string) hclwrite.Tokens { return w.expr(`local.slots["` + s.Name + `"].` + attr) }
		w.app(b, appSpec{
			name: slotKey(s), agentID: w.expr("var.agent_id"), slug: slot("slug"), display: slot("display_name"),
			url:  w.expr(`"http://127.0.0.1:${local.slots["` + s.Name + `"].port}"`),
			icon: slot("icon"), share: slot("share"),
			order: w.expr("var.order == null ? null : var.order + " + strconv.Itoa(i+1)),
			group: w.expr("var.group"), health: health("/api/slots/" + s.Name + "/health"),
		})
	}
}

// moduleVariables are the module's inputs, named as Coder's registry
// modules name theirs (agent_id, agent_name, port, slug, display_name,
// icon, share, order, group), with slots.yaml's values as defaults.
func (w *writer) moduleVariables(b *hclwrite.Body, c *config.Config) {
	variable := func(name, typ, desc string, def hclwrite.Tokens, validations ...[2]string) {
		v := b.AppendNewBlock("variable", []string{name}).Body()
		attrs(v, "type", w.expr(typ), "description", str(desc))
		if def != nil {
			attrs(v, "default", def)
		}
		for _, val := range validations {
			vb := v.AppendNewBlock("validation", nil).Body()
			attrs(vb, "condition", w.expr(val[0]), "error_message", str(val[1]))
		}
		b.AppendNewline()
	}
	// HCL's || evaluates both sides: the checks of optional attributes
	// put a valid value in place of null instead.
	shares := `["owner", "authenticated", "public"]`
	variable("agent_id", "string", "The ID of a Coder agent (coder_agent.<name>.id).", nil)
	variable("agent_name", "string", "The name of that coder_agent resource: part of the app URLs.", str(c.AgentName),
		[2]string{`can(regex("^[a-z](-?[a-z0-9])*$", var.agent_name))`, "agent_name must be the coder_agent resource's name (a lower-case letter, then letters, digits and single hyphens)."})
	w.appHostVariables(b, c)
	variable("port", "number", "The admin panel's port (ADMIN_PORT).", num(c.Admin.Port),
		[2]string{"var.port >= 1 && var.port <= 65535", "port must be between 1 and 65535."})
	variable("slug", "string", "The admin panel app's slug.", str(c.Admin.Slug),
		[2]string{`can(regex("^[a-z0-9](-?[a-z0-9])*$", var.slug))`, "slug must be lower-case letters, digits and single hyphens."})
	variable("display_name", "string", "The admin panel app's name.", str(c.Admin.DisplayName))
	variable("icon", "string", "The admin panel app's icon (and the script's).", str(c.Admin.Icon))
	variable("share", "string", "The admin panel app's share level: owner, authenticated or public.", str(c.Admin.Share),
		[2]string{"contains(" + shares + ", var.share)", "share must be owner, authenticated or public."})
	variable("order", "number", "The admin panel's position among the workspace's apps; the slots follow it. null: Coder's order (by name).", lit(cty.NullVal(cty.Number)))
	variable("group", "string", "The app group of the admin panel and the slots; null: none.", lit(cty.NullVal(cty.String)))
	var names []string
	for _, s := range c.Slots {
		names = append(names, `"`+s.Name+`"`)
	}
	variable("slots", "map(object({ slug = optional(string), port = optional(number), display_name = optional(string), icon = optional(string), share = optional(string) }))",
		"Changes to the slots' apps by slot name, e.g. { a = { share = \"public\" } }; what is left out keeps slots.yaml's value.",
		lit(cty.MapValEmpty(cty.EmptyObject)),
		[2]string{"alltrue([for k in keys(var.slots) : contains([" + strings.Join(names, ", ") + "], k)])", "slots: the keys must be slots of this module (" + strings.Join(slotNames(c), ", ") + ")."},
		[2]string{"alltrue([for s in values(var.slots) : contains(" + shares + ", coalesce(s.share, \"owner\"))])", "slots: share must be owner, authenticated or public."},
		[2]string{"alltrue([for s in values(var.slots) : coalesce(s.port, 1) >= 1 && coalesce(s.port, 1) <= 65535])", "slots: port must be between 1 and 65535."},
		[2]string{`alltrue([for s in values(var.slots) : can(regex("^[a-z0-9](-?[a-z0-9])*$", coalesce(s.slug, "x")))])`, "slots: slug must be lower-case letters, digits and single hyphens."})
	variable("data_dir", "string", "slotagent's data: state, releases, logs, the workspace PostgreSQL. Empty: ~/data/slotagent, on the home volume of most templates. It must outlive the container.", str(""),
		[2]string{`var.data_dir == "" || can(regex("^(/|\\$HOME/)", var.data_dir))`, "data_dir must be an absolute path (or start with $HOME/)."})
	pg := agentconfig.PostgresAuto
	if !c.Postgres.Enabled {
		pg = agentconfig.PostgresOff
	}
	variable("postgres", "string", "The workspace PostgreSQL: auto (on when the image has the server's binaries, else off, with the reason in slotagent status and the panel), true or false.", str(pg),
		[2]string{`contains(["auto", "true", "false"], var.postgres)`, "postgres must be auto, true or false."})
	variable("postgres_port", "number", "The workspace PostgreSQL's port on 127.0.0.1.", num(c.Postgres.Port))
	variable("shutdown_timeout_seconds", "number", "Bound on slotagent's orderly stop. Give the container a longer grace (destroy_grace_seconds on Docker, termination_grace_period_seconds on Kubernetes).", num(c.ShutdownTimeoutSeconds),
		[2]string{"var.shutdown_timeout_seconds >= 1 && var.shutdown_timeout_seconds <= 3600", "shutdown_timeout_seconds must be between 1 and 3600."})
	variable("install_url", "string", "Where the script downloads slotagent's release archive when slotagent is not on the image's PATH; {arch} stands for amd64 or arm64.", str(DefaultInstallURL(c.Release)),
		[2]string{`can(regex("^(https?|file)://", var.install_url))`, "install_url must be an http(s):// or file:// URL."})
	variable("install_sha256", "string", "The archive's SHA-256 (as in SHA256SUMS). Empty: the SHA256SUMS file beside install_url. A mismatch installs nothing and starts nothing.", str(""),
		[2]string{`var.install_sha256 == "" || can(regex("^[0-9a-f]{64}$", var.install_sha256))`, "install_sha256 must be 64 lower-case hex digits, or empty."})
}

func slotNames(c *config.Config) []string {
	var out []string
	for _, s := range c.Slots {
		out = append(out, s.Name)
	}
	return out
}

func (w *writer) moduleOutputs(b *hclwrite.Body, _ *config.Config) {
	o := b.AppendNewBlock("output", []string{"app_urls"}).Body()
	attrs(o, "description", str("Each app's URL, by coder_app name (admin, slot_a, …)."), "value", w.expr("local.app_urls"))
	b.AppendNewline()
	o = b.AppendNewBlock("output", []string{"workspace_env"}).Body()
	attrs(o, "description", str("slotagent's environment, set with coder_env."), "value", w.expr("local.workspace_env"))
}
