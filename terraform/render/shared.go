package render

import (
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	agentconfig "github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/provision/config"
)

// What every target shares: the app_host and app_url_style variables, the
// locals that build the apps' host names and URLs and slotagent's
// environment, and the coder_apps. A template takes their values from
// slots.yaml as literals; a module takes them from its inputs. Both go
// through the functions of this file, so the expressions are the same.

// appValues are the values the shared locals read, as HCL tokens.
type appValues struct {
	agentName hclwrite.Tokens
	// slugs is the app_slugs object: AdminApp and slotKey(s) to slugs.
	slugs     hclwrite.Tokens
	adminPort hclwrite.Tokens
	// slots are the apps' slots, in order, with the token of each port.
	slots        []config.Slot
	slotPort     func(config.Slot) hclwrite.Tokens
	postgres     hclwrite.Tokens
	postgresPort hclwrite.Tokens
	shutdown     hclwrite.Tokens
}

// templateValues are c's values as literals.
func templateValues(c *config.Config) appValues {
	slugs := map[string]string{AdminApp: c.Admin.Slug}
	for _, s := range c.Slots {
		slugs[slotKey(s)] = s.Slug
	}
	pg := agentconfig.PostgresOff
	if c.Postgres.Enabled {
		pg = agentconfig.PostgresOn
	}
	return appValues{
		agentName:    str(c.AgentName),
		slugs:        strMap(slugs),
		adminPort:    str(strconv.Itoa(c.Admin.Port)),
		slots:        c.Slots,
		slotPort:     func(s config.Slot) hclwrite.Tokens { return str(strconv.Itoa(s.Port)) },
		postgres:     str(pg),
		postgresPort: str(strconv.Itoa(c.Postgres.Port)),
		// The same number the container's stop grace is checked against.
		shutdown: str(strconv.Itoa(c.ShutdownTimeoutSeconds) + "s"),
	}
}

// appHostVariables are the app_host and app_url_style variables. Without
// an app host in slots.yaml, a module's app_host has no default (the
// template admin sets it); a template's is filled by push.
func (w *writer) appHostVariables(b *hclwrite.Body, c *config.Config) {
	style := c.AppURLStyle
	if style == "" {
		style = config.URLStyleAgent
	}
	v := b.AppendNewBlock("variable", []string{VarAppHost}).Body()
	attrs(v,
		"type", w.expr("string"),
		"description", str(`The deployment's wildcard app host (CODER_WILDCARD_ACCESS_URL without the scheme), e.g. "*.coder.example.com".`))
	if c.Target != config.TargetModule || c.AppHost != "" {
		attrs(v, "default", str(c.AppHost))
	}
	if c.Target == config.TargetModule {
		// A null from the template (an optional variable of its own
		// passed through) means this default.
		attrs(v, "nullable", lit(cty.False))
	}
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
	if c.Target == config.TargetModule {
		attrs(v, "nullable", lit(cty.False))
	}
	val = v.AppendNewBlock("validation", nil).Body()
	attrs(val,
		"condition", w.expr(`contains(["agent", "short"], var.app_url_style)`),
		"error_message", str(`app_url_style must be "agent" or "short".`))
	b.AppendNewline()
}

// appLocals writes the locals every target has into l: the workspace and
// owner, the apps' host names and URLs, the host names too long for DNS,
// and workspace_env, slotagent's environment.
func (w *writer) appLocals(l *hclwrite.Body, v appValues) {
	attrs(l,
		"workspace", w.expr("lower(data.coder_workspace.me.name)"),
		"owner", w.expr("lower(data.coder_workspace_owner.me.name)"),
		"agent_name", v.agentName,
		"app_slugs", v.slugs,
		"url_scheme", w.expr(`split("://", data.coder_workspace.me.access_url)[0]`),
		"app_host_name", w.expr(`split(":", var.app_host)[0]`),
		// Coder adds the access URL's port when the app host has none.
		"app_port", w.expr(`length(split(":", var.app_host)) > 1 ? ":${split(":", var.app_host)[1]}" : (contains([80, 443], data.coder_workspace.me.access_port) ? "" : ":${data.coder_workspace.me.access_port}")`),
		"host_suffix", w.expr(`var.app_url_style == "short" ? "--${local.workspace}--${local.owner}" : "--${local.agent_name}--${local.workspace}--${local.owner}"`),
		"app_hosts", w.expr(`{ for k, slug in local.app_slugs : k => replace(local.app_host_name, "*", "${slug}${local.host_suffix}") }`),
		"app_urls", w.expr(`{ for k, host in local.app_hosts : k => "${local.url_scheme}://${host}${local.app_port}" }`),
		// DNS allows 63 characters in a label; Coder's app host name is one label.
		"long_app_hosts", w.expr(`[for host in values(local.app_hosts) : host if length(split(".", host)[0]) > 63]`),
		"workspace_env", w.envTokens(v),
	)
}

// envTokens is slotagent's environment besides the Coder agent's token and
// init script: the URLs, host names and ports slotagent serves on, the
// workspace's name, and whether it runs the workspace PostgreSQL.
func (w *writer) envTokens(v appValues) hclwrite.Tokens {
	type item struct {
		name string
		val  hclwrite.Tokens
	}
	items := []item{
		{"ADMIN_PORT", v.adminPort},
		{"ADMIN_URL", w.expr(`local.app_urls["admin"]`)},
		// slotagent git-remote and the slot pages name the workspace's ssh
		// host (coder.<workspace>) with it, as Coder's agent does for its
		// sessions.
		{"CODER_WORKSPACE_NAME", w.expr("data.coder_workspace.me.name")},
	}
	for _, s := range v.slots {
		up := "SLOT_" + strings.ToUpper(s.Name)
		key := hclwrite.TokensForValue(cty.StringVal(slotKey(s)))
		items = append(items,
			item{up + "_PORT", v.slotPort(s)},
			item{up + "_SUBDOMAIN", index(w.expr("local.app_hosts"), key)},
			item{up + "_URL", index(w.expr("local.app_urls"), key)},
		)
	}
	items = append(items,
		item{"SLOTAGENT_POSTGRES_ENABLED", v.postgres},
		item{"SLOTAGENT_POSTGRES_PORT", v.postgresPort},
		item{"SLOTAGENT_SHUTDOWN_TIMEOUT", v.shutdown},
	)
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.name, b.name) })
	var objItems []hclwrite.ObjectAttrTokens
	for _, it := range items {
		objItems = append(objItems, hclwrite.ObjectAttrTokens{Name: hclwrite.TokensForIdentifier(it.name), Value: it.val})
	}
	return hclwrite.TokensForObject(objItems)
}

// appSpec is one coder_app, every value as HCL tokens.
type appSpec struct {
	name                                                    string
	agentID, slug, display, url, icon, share, order, health hclwrite.Tokens
	// group is the module's app group; nil: the attribute is left out.
	group hclwrite.Tokens
}

func (w *writer) app(b *hclwrite.Body, s appSpec) {
	a := b.AppendNewBlock("resource", []string{"coder_app", s.name}).Body()
	attrs(a,
		"agent_id", s.agentID,
		"slug", s.slug,
		"display_name", s.display,
		// 127.0.0.1, not localhost: slotagent listens on IPv4 loopback.
		"url", s.url,
		"icon", s.icon,
		"subdomain", lit(cty.True),
		"share", s.share,
		"order", s.order)
	if s.group != nil {
		attrs(a, "group", s.group)
	}
	h := a.AppendNewBlock("healthcheck", nil).Body()
	attrs(h, "url", s.health, "interval", num(5), "threshold", num(6))
	b.AppendNewline()
}

// longHostsCheck is the precondition that refuses app host names DNS
// cannot have.
func (w *writer) longHostsCheck(r *hclwrite.Body) {
	lc := r.AppendNewBlock("lifecycle", nil).Body()
	pc := lc.AppendNewBlock("precondition", nil).Body()
	attrs(pc,
		"condition", w.expr("length(local.long_app_hosts) == 0"),
		"error_message", w.expr(`"These app host names have a first label longer than DNS's 63 characters: ${join(", ", local.long_app_hosts)}. Use a shorter workspace name, owner name, slot slug or agent name, or app_url_style = \"short\"."`))
}
