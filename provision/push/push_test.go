package push

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/coder/v2/codersdk"
	"github.com/google/uuid"

	"github.com/coder-slots/coder-slots/provision/config"
	"github.com/coder-slots/coder-slots/provision/internal/fakecoder"
	"github.com/coder-slots/coder-slots/terraform/render"
)

// setup renders the default template and points a config at the fake.
func setup(t *testing.T) (*fakecoder.Server, Options, *bytes.Buffer) {
	t.Helper()
	srv := fakecoder.New()
	t.Cleanup(srv.Close)
	c, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := render.Files(c)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tpl")
	if err := render.Write(dir, files, false); err != nil {
		t.Fatal(err)
	}
	c.Coder.URL, c.Coder.SessionToken = srv.URL, srv.Token
	var log bytes.Buffer
	return srv, Options{Dir: dir, Name: "slots", Config: c, Log: &log, PollInterval: 10 * time.Millisecond}, &log
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func variables(vars []codersdk.VariableValue) map[string]string {
	m := map[string]string{}
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	return m
}

func TestCreateThenUpdate(t *testing.T) {
	srv, o, log := setup(t)
	res, err := Push(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || !res.Activated || res.AppHost != "*.coder.example.com" || res.URLStyle != config.URLStyleShort {
		t.Fatalf("result: %+v", res)
	}
	tpl, ok := srv.Template(orgIDOf(srv), "slots")
	if !ok || tpl.ActiveVersionID != res.VersionID || tpl.Description != o.Config.Template.Description {
		t.Fatalf("template: %+v, %t", tpl, ok)
	}
	v, vars, files := srv.TemplateVersion(res.VersionID)
	if v.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("job: %+v", v.Job)
	}
	if got := variables(vars); got[render.VarAppHost] != "*.coder.example.com" || got[render.VarAppURLStyle] != "short" {
		t.Fatalf("variables: %v", got)
	}
	main, _ := os.ReadFile(filepath.Join(o.Dir, render.MainTF))
	if !bytes.Equal(files[render.MainTF], main) || len(files) != 1 {
		t.Fatalf("uploaded files: %d, main.tf equal: %t", len(files), bytes.Equal(files[render.MainTF], main))
	}
	for _, want := range []string{"Coder v2.30.0 at " + srv.URL + ", organization coder", "  Parsing template parameters", "  Cleaning Up", "Created template slots"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	// A second push adds a version; it becomes active only with Activate.
	second, err := Push(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	tpl, _ = srv.Template(orgIDOf(srv), "slots")
	if second.Created || second.Activated || tpl.ActiveVersionID != res.VersionID {
		t.Fatalf("second push: %+v, active %s", second, tpl.ActiveVersionID)
	}
	if srv.Requests("POST /api/v2/files") != 2 {
		t.Fatalf("uploads: %d", srv.Requests("POST /api/v2/files"))
	}
	o.Activate = true
	third, err := Push(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	tpl, _ = srv.Template(orgIDOf(srv), "slots")
	if !third.Activated || tpl.ActiveVersionID != third.VersionID || third.TemplateID != tpl.ID {
		t.Fatalf("third push: %+v, template %+v", third, tpl)
	}
}

func TestConfiguredSettingsWin(t *testing.T) {
	srv, o, log := setup(t)
	srv.Version = "v2.26.3"
	res, err := Push(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.URLStyle != config.URLStyleAgent {
		t.Fatalf("v2.26 gets style %q", res.URLStyle)
	}
	o.Config.AppHost, o.Config.AppURLStyle = "*.apps.example.org", config.URLStyleShort
	o.Name = "other"
	res, err = Push(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	_, vars, _ := srv.TemplateVersion(res.VersionID)
	if got := variables(vars); got[render.VarAppHost] != "*.apps.example.org" || got[render.VarAppURLStyle] != "short" {
		t.Fatalf("variables: %v", got)
	}
	if !strings.Contains(log.String(), "Warning: app_host is *.apps.example.org but the deployment serves apps on *.coder.example.com") {
		t.Fatalf("no warning about the app host:\n%s", log)
	}
}

// Where Coder's provisioner finds the cluster is known where the template is
// pushed: push passes the kubeconfig variables that the config sets, and
// only to a kubernetes template.
func TestPushSetsTheClusterVariables(t *testing.T) {
	srv, o, _ := setup(t)
	o.Config.Kubernetes.ConfigPath, o.Config.Kubernetes.ConfigContext = "/srv/coder/kubeconfig", "lab"
	res, err := Push(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	_, vars, _ := srv.TemplateVersion(res.VersionID)
	if got := variables(vars); len(got) != 2 {
		t.Fatalf("a docker template got %v", got)
	}
	o.Config.Target, o.Name = config.TargetKubernetes, "kube"
	res, err = Push(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	_, vars, _ = srv.TemplateVersion(res.VersionID)
	if got := variables(vars); got[render.VarKubeConfigPath] != "/srv/coder/kubeconfig" || got[render.VarKubeConfigContext] != "lab" || len(got) != 4 {
		t.Fatalf("variables: %v", got)
	}
	o.Config.Kubernetes.ConfigPath, o.Config.Kubernetes.ConfigContext = "", ""
	res, err = Push(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	_, vars, _ = srv.TemplateVersion(res.VersionID)
	if got := variables(vars); len(got) != 2 {
		t.Fatalf("unset kubeconfig settings keep the render's defaults, got %v", got)
	}
}

func TestWarnsWhenNoProvisionerMatches(t *testing.T) {
	srv, o, log := setup(t)
	srv.Provisioners = 0
	if _, err := Push(ctx(t), o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "Warning: no provisioner daemon matches the job's tags") {
		t.Fatalf("no warning:\n%s", log)
	}
	srv.Provisioners = 1
	log.Reset()
	if _, err := Push(ctx(t), o); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "Warning: no provisioner") {
		t.Fatalf("a warning with a matching provisioner:\n%s", log)
	}
}

func TestOrganization(t *testing.T) {
	srv, o, _ := setup(t)
	team := srv.AddOrganization("team", false)
	o.Config.Coder.Organization = "team"
	if _, err := Push(ctx(t), o); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.Template(team.ID, "slots"); !ok {
		t.Fatal("the template is not in organization team")
	}
	o.Config.Coder.Organization = "nope"
	_, err := Push(ctx(t), o)
	if err == nil || err.Error() != `push: coder.organization: "nope" is not an organization of this user` {
		t.Fatalf("err = %v", err)
	}
}

func TestFailures(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(*fakecoder.Server, *Options)
		want    string
		// uploads is how many uploads may have happened.
		uploads int
	}{
		{"no token", func(_ *fakecoder.Server, o *Options) { o.Config.Coder.SessionToken = "" },
			"push: no session token: set CODER_SESSION_TOKEN", 0},
		{"no url", func(_ *fakecoder.Server, o *Options) { o.Config.Coder.URL = "" },
			"push: no Coder URL: set CODER_URL", 0},
		{"bad token", func(_ *fakecoder.Server, o *Options) { o.Config.Coder.SessionToken = "expired" },
			"push: list your organizations: the deployment refused the session token (401: " + fakecoder.SignedOut + " (API key is invalid.)); check CODER_SESSION_TOKEN", 0},
		{"bad name", func(_ *fakecoder.Server, o *Options) { o.Name = "my slots" },
			`push: --name "my slots" is not a valid template name`, 0},
		{"not a template", func(_ *fakecoder.Server, o *Options) { o.Dir = os.TempDir() + "/slotprov-no-such-dir" },
			"push: tarball: ", 0},
		{"no app host anywhere", func(s *fakecoder.Server, _ *Options) { s.AppHost = "" },
			"push: the deployment has no wildcard app host (CODER_WILDCARD_ACCESS_URL)", 0},
		{"job fails", func(s *fakecoder.Server, _ *Options) {
			s.Job = func(map[string][]byte, []codersdk.VariableValue) ([]string, string) {
				return []string{"Setting up", "Error: Unsupported argument on main.tf line 3"}, "terraform plan: exit status 1"
			}
		}, "push: the template version's build failed: terraform plan: exit status 1", 1},
		{"name taken by a template the user cannot see", func(s *fakecoder.Server, o *Options) {
			s.AddHiddenTemplate(orgIDOf(s), o.Name)
		}, `push: a template named "slots" already exists in organization coder, but this user cannot see it (409: Template with name "slots" already exists.; name: This value is already in use and should be unique.)`, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, o, log := setup(t)
			tc.prepare(srv, &o)
			_, err := Push(ctx(t), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			if n := srv.Requests("POST /api/v2/files"); n > tc.uploads {
				t.Fatalf("%d uploads", n)
			}
			if srv.Requests("POST /api/v2/organizations/{org}/templates") > 0 && tc.name != "name taken by a template the user cannot see" {
				t.Fatal("a template was created")
			}
			if tc.name == "job fails" && !strings.Contains(log.String(), "  Error: Unsupported argument on main.tf line 3") {
				t.Fatalf("the job's logs were not shown:\n%s", log)
			}
		})
	}
}

// orgIDOf is the fake's default organization, asked through codersdk.
func orgIDOf(s *fakecoder.Server) uuid.UUID {
	u, _ := url.Parse(s.URL)
	c := codersdk.New(u)
	c.SetSessionToken(s.Token)
	orgs, err := c.OrganizationsByUser(context.Background(), codersdk.Me)
	if err != nil || len(orgs) == 0 {
		panic(fmt.Sprintf("organizations: %v", err))
	}
	return orgs[0].ID
}

func TestUnreachable(t *testing.T) {
	_, o, _ := setup(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	o.Config.Coder.URL = "http://" + addr
	_, err = Push(ctx(t), o)
	if err == nil || !strings.Contains(err.Error(), "push: reach the deployment: cannot reach Coder at http://"+addr+": ") ||
		!strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v", err)
	}
}

func TestURLStyleFor(t *testing.T) {
	for v, want := range map[string]string{
		"v2.30.0": "short", "v2.27.0+8b3c1": "short", "v2.26.9": "agent", "v2.9.0": "agent",
		"v0.0.0-devel+abc": "agent", "v2.28.0-rc.1": "agent", "": "agent", "nonsense": "agent",
	} {
		if got := URLStyleFor(v); got != want {
			t.Errorf("URLStyleFor(%q) = %q; want %q", v, got, want)
		}
	}
}
