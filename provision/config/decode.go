package config

import (
	"fmt"
	"os"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/spf13/cast"
	"github.com/spf13/viper"

	agentconfig "github.com/coder-slots/coder-slots/agent/config"
)

// decoder turns viper's loosely typed values into Config fields and keeps
// the first error, naming its key.
type decoder struct {
	v *viper.Viper
	// fileOnly holds the file-only kubernetes keys (readFileOnly).
	fileOnly map[string]any
	err      error
}

func (d *decoder) fail(key, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) str(key string) string {
	s, err := cast.ToStringE(d.v.Get(key))
	if err != nil {
		d.fail(key, "want a string, got %v", d.v.Get(key))
	}
	return strings.TrimSpace(s)
}

func (d *decoder) int(key string) int {
	n, err := cast.ToIntE(d.v.Get(key))
	if err != nil {
		d.fail(key, "want a whole number, got %v", d.v.Get(key))
	}
	return n
}

func (d *decoder) bool(key string) bool {
	b, err := cast.ToBoolE(d.v.Get(key))
	if err != nil {
		d.fail(key, "want true or false, got %v", d.v.Get(key))
	}
	return b
}

func (d *decoder) strings(key string) []string {
	raw := d.v.Get(key)
	if s, ok := raw.(string); ok { // from the environment: comma- or space-separated
		return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
	}
	out, err := cast.ToStringSliceE(raw)
	if err != nil {
		d.fail(key, "want a list of strings, got %v", raw)
	}
	return out
}

func decode(v *viper.Viper, fileOnly map[string]any) (*Config, error) {
	d := &decoder{v: v, fileOnly: fileOnly}
	c := &Config{
		Template:    Template{Name: d.str("template.name"), Description: d.str("template.description")},
		Coder:       Coder{URL: d.str("coder.url"), SessionToken: d.str("coder.session_token"), Organization: d.str("coder.organization")},
		AppHost:     d.str("app_host"),
		AppURLStyle: d.str("app_url_style"),
		AgentName:   d.str("agent_name"),
		Admin: Admin{
			Port: d.int("admin.port"), Slug: d.str("admin.slug"), DisplayName: d.str("admin.display_name"),
			Icon: d.str("admin.icon"), Share: d.str("admin.share"),
		},
		Image: Image{
			Mode: d.str("image.mode"), Ref: d.str("image.ref"),
			Build: Build{Base: d.str("image.build.base"), NodeMajor: d.int("image.build.node_major"), AptPackages: d.strings("image.build.apt_packages")},
		},
		Resources:              Resources{CPUs: d.str("resources.cpus"), MemoryMB: d.int("resources.memory_mb")},
		Postgres:               Postgres{Enabled: d.bool("postgres.enabled"), Port: d.int("postgres.port")},
		Docker:                 Docker{StopGraceSeconds: d.int("docker.stop_grace_seconds"), NetworkMode: d.str("docker.network_mode")},
		ShutdownTimeoutSeconds: d.int("shutdown_timeout_seconds"),
		Target:                 d.str("target"),
		Kubernetes:             d.kubernetes(),
		TerraformConfig:        d.str("terraform_config"),
	}
	if c.TerraformConfig == "" {
		// What Terraform itself would read when nothing else is set.
		c.TerraformConfig = os.Getenv("TF_CLI_CONFIG_FILE")
	}
	c.Slots = d.slots()
	return c, d.err
}

// slots reads the slots list; without one, every agent slot with its
// default port.
func (d *decoder) slots() []Slot {
	if !d.v.IsSet("slots") {
		var out []Slot
		for _, name := range agentconfig.SlotNames {
			out = append(out, defaultSlot(name))
		}
		return out
	}
	raw, _ := d.v.Get("slots").([]any)
	var out []Slot
	for i, item := range raw {
		m, _ := item.(map[string]any)
		get := func(k string) any {
			for key, val := range m {
				if strings.EqualFold(key, k) {
					return val
				}
			}
			return nil
		}
		key := func(k string) string { return fmt.Sprintf("slots[%d].%s", i, k) }
		name, err := cast.ToStringE(get("name"))
		if err != nil || name == "" {
			d.fail(key("name"), "missing (one of %s)", strings.Join(agentconfig.SlotNames, ", "))
			return nil
		}
		s := defaultSlot(name)
		s.Slug = d.optString(key("slug"), get("slug"), s.Slug)
		s.DisplayName = d.optString(key("display_name"), get("display_name"), s.DisplayName)
		s.Icon = d.optString(key("icon"), get("icon"), s.Icon)
		s.Share = d.optString(key("share"), get("share"), s.Share)
		if p := get("port"); p != nil {
			n, err := cast.ToIntE(p)
			if err != nil {
				d.fail(key("port"), "want a port number, got %v", p)
			}
			s.Port = n
		}
		out = append(out, s)
	}
	return out
}

func (d *decoder) optString(key string, raw any, def string) string {
	if raw == nil {
		return def
	}
	s, err := cast.ToStringE(raw)
	if err != nil {
		d.fail(key, "want a string, got %v", raw)
	}
	return strings.TrimSpace(s)
}

// defaultSlot is slot name with its defaults: slug slot-<name>, the agent's
// default port (3001 for a, …), owner-only.
func defaultSlot(name string) Slot {
	port := 0
	for i, n := range agentconfig.SlotNames {
		if n == name {
			port = 3001 + i
		}
	}
	return Slot{
		Name: name, Slug: "slot-" + name, Port: port,
		DisplayName: "Slot " + strings.ToUpper(name), Icon: "/icon/widgets.svg", Share: ShareOwner,
	}
}

// closest is the known key nearest to key, if it is near enough to be a typo.
func closest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := levenshtein.Distance(key, k, nil); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}
