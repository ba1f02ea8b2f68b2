package tfrun

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/provision/config"
	"github.com/coder-slots/coder-slots/terraform/tfmirror"
)

// The module, used by the throw-away root module, gives a workspace the
// same apps, URLs and environment as the template.
func TestModuleValidateAndPlan(t *testing.T) {
	r := Runner{CLIConfig: tfmirror.Require(t)}
	mod := template(t, "target: module\n")
	if is, err := IsModule(mod); err != nil || !is {
		t.Fatalf("IsModule(module) = %t, %v", is, err)
	}
	tpl := template(t, "")
	if is, err := IsModule(tpl); err != nil || is {
		t.Fatalf("IsModule(template) = %t, %v", is, err)
	}
	if err := r.Validate(ctx(t), mod); err != nil {
		t.Fatal(err)
	}
	untouched(t, mod)
	ws := Workspace{Name: "dev", Owner: "alice"}
	got, err := r.Plan(ctx(t), mod, ws)
	if err != nil {
		t.Fatal(err)
	}
	untouched(t, mod)
	want, err := r.Plan(ctx(t), tpl, ws)
	if err != nil {
		t.Fatal(err)
	}
	if got.Target != config.TargetModule || got.Container != nil {
		t.Fatalf("target %q, container %+v", got.Target, got.Container)
	}
	if len(got.Apps) != len(want.Apps) {
		t.Fatalf("module apps %+v, template apps %+v", got.Apps, want.Apps)
	}
	for i, a := range got.Apps {
		w := want.Apps[i]
		if a.Name != w.Name || a.URL != w.URL || a.Local != w.Local || a.Healthcheck != w.Healthcheck || a.Share != w.Share || !a.Subdomain {
			t.Errorf("module app %+v, template app %+v", a, w)
		}
	}
	for name, v := range want.Env {
		if name == "SLOTAGENT_POSTGRES_ENABLED" {
			continue // the module's default is auto: it does not know the image
		}
		if got.Env[name] != v {
			t.Errorf("env %s: module %q, template %q", name, got.Env[name], v)
		}
	}
	if got.Env["SLOTAGENT_POSTGRES_ENABLED"] != "auto" {
		t.Errorf("SLOTAGENT_POSTGRES_ENABLED = %q, want auto", got.Env["SLOTAGENT_POSTGRES_ENABLED"])
	}
	if text := got.Text(); !strings.Contains(text, "coder_script starts slotagent as a service") || !strings.Contains(text, "https://slot-c--main--dev--alice.coder.example.com") {
		t.Errorf("plan text:\n%s", text)
	}
}

// A template that gives the module bad input fails validation with the
// module's one-line message.
func TestModuleBadInput(t *testing.T) {
	r := Runner{CLIConfig: tfmirror.Require(t)}
	mod := template(t, "target: module\n")
	for input, want := range map[string]string{
		`install_sha256 = "abc"`:                 "install_sha256 must be 64 lower-case hex digits",
		`install_url = "ftp://example.com/x"`:    "install_url must be an http(s):// or file:// URL",
		`slots = { z = { share = "owner" } }`:    "the keys must be slots of this module (a, b, c, d, e)",
		`slots = { a = { share = "everyone" } }`: "share must be owner, authenticated or public",
		`slots = { b = { port = 70000 } }`:       "port must be between 1 and 65535",
		`data_dir = "data"`:                      "data_dir must be an absolute path",
		`postgres = "maybe"`:                     "postgres must be auto, true or false",
		`share = "world"`:                        "share must be owner, authenticated or public",
		`app_host = "coder.example.com"`:         "app_host must be the deployment's wildcard app host",
		`agent_name = "Main"`:                    "agent_name must be the coder_agent resource's name",
		`shutdown_timeout_seconds = 0`:           "shutdown_timeout_seconds must be between 1 and 3600",
	} {
		t.Run(input, func(t *testing.T) {
			dir := t.TempDir()
			if err := copyTemplate(mod, filepath.Join(dir, ModuleDir)); err != nil {
				t.Fatal(err)
			}
			main := strings.Replace(rootModule, "  app_url_style = var.app_url_style\n", "  app_url_style = var.app_url_style\n  "+input+"\n", 1)
			if strings.Contains(input, "app_host") {
				main = strings.Replace(main, "  app_host      = var.app_host\n", "", 1)
			}
			if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(main), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := r.Plan(ctx(t), dir, Workspace{Name: "dev", Owner: "alice"})
			if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line with %q", err, want)
			}
		})
	}
}
