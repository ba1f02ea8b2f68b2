package tfrun

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/terraform-exec/tfexec"
	tfjson "github.com/hashicorp/terraform-json"

	"github.com/coder-slots/coder-slots/provision/config"
)

// Workspace is the workspace build a plan previews: what Coder tells the
// coder provider through CODER_WORKSPACE_* variables.
type Workspace struct {
	Name  string
	Owner string
	// ID and OwnerID default to UUIDs derived from owner and name, so the
	// same plan gives the same output.
	ID, OwnerID string
	// Transition is "start" (default) or "stop".
	Transition string
	// AccessURL is the deployment's URL (CODER_AGENT_URL for the provider);
	// default https://coder.example.com.
	AccessURL string
	// Variables are template variables as a push gives them (app_host,
	// app_url_style); one not named keeps the template's default.
	Variables map[string]string
}

// Env is the environment the coder provider reads.
func (w Workspace) Env() map[string]string {
	env := map[string]string{
		"CODER_WORKSPACE_NAME":        w.Name,
		"CODER_WORKSPACE_OWNER":       w.Owner,
		"CODER_WORKSPACE_OWNER_NAME":  w.Owner,
		"CODER_WORKSPACE_OWNER_EMAIL": w.Owner + "@example.com",
		"CODER_WORKSPACE_ID":          w.ID,
		"CODER_WORKSPACE_OWNER_ID":    w.OwnerID,
		"CODER_WORKSPACE_TRANSITION":  w.Transition,
		"CODER_AGENT_URL":             w.AccessURL,
	}
	return env
}

func (w Workspace) withDefaults() Workspace {
	if w.ID == "" {
		w.ID = derivedUUID("workspace/" + w.Owner + "/" + w.Name)
	}
	if w.OwnerID == "" {
		w.OwnerID = derivedUUID("user/" + w.Owner)
	}
	if w.Transition == "" {
		w.Transition = "start"
	}
	if w.AccessURL == "" {
		w.AccessURL = "https://coder.example.com"
	}
	return w
}

func (w Workspace) check() error {
	if w.Name == "" || w.Owner == "" {
		return fmt.Errorf("plan: the workspace name and owner are required (--workspace, --owner)")
	}
	if w.Transition != "start" && w.Transition != "stop" {
		return fmt.Errorf("plan: transition %q is not start or stop", w.Transition)
	}
	return nil
}

// derivedUUID is a version-8 UUID made from a SHA-256 of s.
func derivedUUID(s string) string {
	h := sha256.Sum256([]byte(s))
	h[6] = h[6]&0x0f | 0x80
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// Plan runs terraform init and plan on a scratch copy of dir for workspace
// w and summarises what that workspace gets.
func (r Runner) Plan(ctx context.Context, dir string, w Workspace) (*Summary, error) {
	w = w.withDefaults()
	if err := w.check(); err != nil {
		return nil, err
	}
	wd, cleanup, err := r.prepare(ctx, dir, w.Env())
	if err != nil {
		return nil, err
	}
	defer cleanup()
	planFile := filepath.Join(wd.dir, "workspace.tfplan")
	var ui bytes.Buffer
	opts := []tfexec.PlanOption{tfexec.Out(planFile), tfexec.Refresh(false)}
	for _, name := range slices.Sorted(maps.Keys(w.Variables)) {
		opts = append(opts, tfexec.Var(name+"="+w.Variables[name]))
	}
	if _, err := wd.tf.PlanJSON(ctx, &ui, opts...); err != nil {
		return nil, fmt.Errorf("terraform plan: %s", planError(ui.Bytes(), err))
	}
	plan, err := wd.tf.ShowPlanFile(ctx, planFile)
	if err != nil {
		return nil, fmt.Errorf("terraform show: %s", oneLine(err.Error()))
	}
	return summarise(plan, w)
}

// planError is the first error diagnostic of terraform plan -json, on one line.
func planError(ui []byte, err error) string {
	sc := bufio.NewScanner(bytes.NewReader(ui))
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		var msg struct {
			Diagnostic *struct {
				Severity, Summary, Detail string
				Address                   string
			}
		}
		if json.Unmarshal(sc.Bytes(), &msg) != nil || msg.Diagnostic == nil || msg.Diagnostic.Severity != "error" {
			continue
		}
		d := msg.Diagnostic
		s := d.Summary
		if d.Address != "" {
			s = d.Address + ": " + s
		}
		if d.Detail != "" {
			s += ": " + d.Detail
		}
		return oneLine(s)
	}
	return oneLine(err.Error())
}

// Summary is what a workspace gets from the template. Its JSON form is
// what `slotprov plan --json` prints.
type Summary struct {
	Workspace  string `json:"workspace"`
	Owner      string `json:"owner"`
	Transition string `json:"transition"`
	// Target is config.TargetDocker, config.TargetKubernetes or
	// config.TargetModule, from the template's resources.
	Target string `json:"target"`
	// Apps are the coder_apps, in the template's order.
	Apps []App `json:"apps"`
	// Env is the container's environment that is known before the build
	// (everything but the agent's token and init script).
	Env map[string]string `json:"env"`
	// EnvNames are the names of every variable in the container's environment.
	EnvNames []string `json:"env_names"`
	// Container is nil when the transition is stop.
	Container *Container `json:"container"`
	// HomeVolume is the docker volume or PersistentVolumeClaim mounted on
	// the home directory.
	HomeVolume string `json:"home_volume"`
}

// App is one coder_app.
type App struct {
	// Name is the coder_app resource's name (admin, slot_a, …).
	Name        string `json:"name"`
	Slug        string `json:"slug"`
	DisplayName string `json:"display_name"`
	// URL is where users open it; Local is what Coder proxies to.
	URL         string `json:"url"`
	Local       string `json:"local"`
	Share       string `json:"share"`
	Subdomain   bool   `json:"subdomain"`
	Healthcheck string `json:"healthcheck"`
	Order       int    `json:"order"`
}

// Container is the workspace container: a docker_container, or the
// kubernetes_deployment whose pod runs it.
type Container struct {
	Name string `json:"name"`
	// Namespace is the Deployment's; empty on Docker.
	Namespace  string   `json:"namespace,omitempty"`
	Image      string   `json:"image"`
	Entrypoint []string `json:"entrypoint"`
}

func summarise(p *tfjson.Plan, w Workspace) (*Summary, error) {
	s := &Summary{Workspace: w.Name, Owner: w.Owner, Transition: w.Transition}
	var urls map[string]string
	if err := output(p, "app_urls", &urls); err != nil {
		return nil, err
	}
	if err := output(p, "workspace_env", &s.Env); err != nil {
		return nil, err
	}
	if err := output(p, "container_env_names", &s.EnvNames); err != nil {
		return nil, err
	}
	var image string
	for _, rc := range p.ResourceChanges {
		after, _ := rc.Change.After.(map[string]any)
		if rc.Mode != tfjson.ManagedResourceMode || after == nil {
			continue
		}
		switch rc.Type {
		case "coder_app":
			a := App{Name: rc.Name, URL: urls[rc.Name]}
			a.Slug, _ = after["slug"].(string)
			a.DisplayName, _ = after["display_name"].(string)
			a.Local, _ = after["url"].(string)
			a.Share, _ = after["share"].(string)
			a.Subdomain, _ = after["subdomain"].(bool)
			if order, ok := after["order"].(float64); ok {
				a.Order = int(order)
			}
			if hc, ok := after["healthcheck"].([]any); ok && len(hc) == 1 {
				if m, ok := hc[0].(map[string]any); ok {
					a.Healthcheck, _ = m["url"].(string)
				}
			}
			s.Apps = append(s.Apps, a)
		case "docker_image":
			image, _ = after["name"].(string)
		case "docker_volume":
			s.Target = config.TargetDocker
			s.HomeVolume, _ = after["name"].(string)
		case "docker_container":
			c := &Container{}
			c.Name, _ = after["name"].(string)
			for _, e := range asList(after["entrypoint"]) {
				c.Entrypoint = append(c.Entrypoint, fmt.Sprint(e))
			}
			s.Container = c
		case "kubernetes_persistent_volume_claim":
			s.Target = config.TargetKubernetes
			s.HomeVolume, _ = first(after["metadata"])["name"].(string)
		case "coder_script":
			s.Target = config.TargetModule
		case "kubernetes_deployment":
			s.Container, image = deployment(after)
		}
	}
	if s.Container != nil {
		s.Container.Image = image
	}
	slices.SortStableFunc(s.Apps, func(a, b App) int { return a.Order - b.Order })
	return s, nil
}

// deployment is the workspace container of a planned kubernetes_deployment
// (nil when it has no replicas: the workspace is stopped) and its image.
func deployment(after map[string]any) (*Container, string) {
	spec := first(after["spec"])
	// replicas is a number in provider 1.x and a string in 2.x.
	if r := fmt.Sprint(spec["replicas"]); r == "0" || r == "<nil>" {
		return nil, ""
	}
	meta := first(after["metadata"])
	c := &Container{}
	c.Name, _ = meta["name"].(string)
	c.Namespace, _ = meta["namespace"].(string)
	ct := first(first(first(spec["template"])["spec"])["container"])
	for _, e := range asList(ct["command"]) {
		c.Entrypoint = append(c.Entrypoint, fmt.Sprint(e))
	}
	image, _ := ct["image"].(string)
	return c, image
}

// first is the first element of a planned nested block list, as a map.
func first(v any) map[string]any {
	l := asList(v)
	if len(l) == 0 {
		return nil
	}
	m, _ := l[0].(map[string]any)
	return m
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// output decodes a plan output that must be known at plan time.
func output(p *tfjson.Plan, name string, into any) error {
	var o *tfjson.StateOutput
	if p.PlannedValues != nil {
		o = p.PlannedValues.Outputs[name]
	}
	if o == nil || o.Value == nil {
		return fmt.Errorf("plan: the template has no known output %q (was it rendered by slotprov?)", name)
	}
	b, err := json.Marshal(o.Value)
	if err != nil {
		return fmt.Errorf("plan: output %s: %w", name, err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("plan: output %s: %w", name, err)
	}
	return nil
}

// Text writes the summary for people.
func (s *Summary) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Workspace %s of %s (%s)\n\nApps:\n", s.Workspace, s.Owner, s.Transition)
	for _, a := range s.Apps {
		fmt.Fprintf(&b, "  %-8s %-14q %s\n           -> %s, share %s, healthcheck %s\n", a.Name, a.DisplayName, a.URL, a.Local, a.Share, a.Healthcheck)
	}
	switch {
	case s.Target == config.TargetModule:
		b.WriteString("\nNo container of its own: the module runs in the template's workspace, where its coder_script starts slotagent as a service\n")
	case s.Container == nil && s.Target == config.TargetKubernetes:
		b.WriteString("\nNo pod (the workspace is stopped: its Deployment has 0 replicas)\n")
	case s.Container == nil:
		b.WriteString("\nNo container (the workspace is stopped)\n")
	case s.Target == config.TargetKubernetes:
		fmt.Fprintf(&b, "\nDeployment %s in namespace %s (1 replica), image %s, command %q\n", s.Container.Name, s.Container.Namespace, s.Container.Image, s.Container.Entrypoint)
	default:
		fmt.Fprintf(&b, "\nContainer %s, image %s, entrypoint %q\n", s.Container.Name, s.Container.Image, s.Container.Entrypoint)
	}
	switch s.Target {
	case config.TargetKubernetes:
		fmt.Fprintf(&b, "Home PVC %s\n\nEnvironment:\n", s.HomeVolume)
	case config.TargetModule:
		b.WriteString("\nEnvironment (coder_env):\n")
	default:
		fmt.Fprintf(&b, "Home volume %s\n\nEnvironment:\n", s.HomeVolume)
	}
	for _, name := range s.EnvNames {
		if v, ok := s.Env[name]; ok {
			fmt.Fprintf(&b, "  %s=%s\n", name, v)
		} else {
			fmt.Fprintf(&b, "  %s (known after the build)\n", name)
		}
	}
	return b.String()
}
