// Package push does what `coder templates push` does, with codersdk: find
// the organization, pack the template directory, upload it, create a
// template version with the template's variables, follow its build logs,
// and create the template or make the new version active.
package push

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coder/coder/v2/codersdk"
	"github.com/google/uuid"
	"golang.org/x/mod/semver"

	"github.com/coder-slots/coder-slots/provision/config"
	"github.com/coder-slots/coder-slots/provision/tarball"
	"github.com/coder-slots/coder-slots/terraform/render"
)

// ShortURLsSince is the first Coder version that accepts app URLs without
// the agent name ({slug}--{workspace}--{owner}).
const ShortURLsSince = "v2.27.0"

// Options is one push.
type Options struct {
	// Dir is the rendered template directory.
	Dir string
	// Name is the template's name.
	Name string
	// Activate makes the new version the active one of an existing template
	// (a new template starts with it anyway).
	Activate bool
	// Config gives the deployment (URL, token, organization), the app host
	// and URL style (empty: ask the deployment) and the description.
	Config *config.Config
	// Log receives progress and the build's logs.
	Log io.Writer
	// PollInterval is how often the version's job is polled when its log
	// stream ends before the job does; default 1s.
	PollInterval time.Duration
}

// Result is what a push made.
type Result struct {
	TemplateID   uuid.UUID
	VersionID    uuid.UUID
	VersionName  string
	Created      bool
	Activated    bool
	AppHost      string
	URLStyle     string
	TarballBytes int
}

// Push pushes the template. Nothing reaches the deployment before the
// options, the directory and the deployment's answers have been checked.
func Push(ctx context.Context, o Options) (*Result, error) {
	c := o.Config
	if c.Coder.URL == "" {
		return nil, errors.New("push: no Coder URL: set CODER_URL (or coder.url)")
	}
	if c.Coder.SessionToken == "" {
		return nil, errors.New("push: no session token: set CODER_SESSION_TOKEN (`coder tokens create` makes one)")
	}
	if err := codersdkName(o.Name); err != nil {
		return nil, err
	}
	pack, err := tarball.Pack(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	for _, s := range pack.Skipped {
		fmt.Fprintf(o.Log, "Leaving out %s\n", s)
	}
	u, err := url.Parse(c.Coder.URL)
	if err != nil {
		return nil, fmt.Errorf("push: coder.url: %w", err)
	}
	client := codersdk.New(u)
	client.SetSessionToken(c.Coder.SessionToken)
	p := &pusher{o: o, client: client, res: &Result{TarballBytes: len(pack.Tar)}}
	if err := p.run(ctx, pack.Tar); err != nil {
		return nil, err
	}
	return p.res, nil
}

type pusher struct {
	o      Options
	client *codersdk.Client
	res    *Result
}

// clusterVariables are the kubernetes template's kubeconfig variables,
// when slots.yaml (or its environment or flags) sets them: where Coder's
// provisioner finds the cluster is known where the template is pushed.
func clusterVariables(c *config.Config) []codersdk.VariableValue {
	m := render.ClusterVariables(c)
	var vars []codersdk.VariableValue
	for _, name := range slices.Sorted(maps.Keys(m)) {
		vars = append(vars, codersdk.VariableValue{Name: name, Value: m[name]})
	}
	return vars
}

func (p *pusher) logf(format string, args ...any) { fmt.Fprintf(p.o.Log, format+"\n", args...) }

func (p *pusher) run(ctx context.Context, tar []byte) error {
	c := p.o.Config
	info, err := p.client.BuildInfo(ctx)
	if err != nil {
		return p.fail("reach the deployment", err)
	}
	org, err := p.organization(ctx)
	if err != nil {
		return err
	}
	if err := p.appSettings(ctx, info); err != nil {
		return err
	}
	p.logf("Coder %s at %s, organization %s; app host %s, URL style %s", info.Version, c.Coder.URL, org.Name, p.res.AppHost, p.res.URLStyle)

	var template *codersdk.Template
	t, err := p.client.TemplateByName(ctx, org.ID, p.o.Name)
	switch {
	case err == nil:
		template = &t
	case statusOf(err) != http.StatusNotFound:
		return p.fail("look up template "+p.o.Name, err)
	}

	up, err := p.client.Upload(ctx, codersdk.ContentTypeTar, bytes.NewReader(tar))
	if err != nil {
		return p.fail("upload the template", err)
	}
	p.logf("Uploaded %d bytes (file %s)", len(tar), up.ID)

	req := codersdk.CreateTemplateVersionRequest{
		Message:       "Pushed by slotprov",
		StorageMethod: codersdk.ProvisionerStorageMethodFile,
		FileID:        up.ID,
		Provisioner:   codersdk.ProvisionerTypeTerraform,
		UserVariableValues: append([]codersdk.VariableValue{
			{Name: render.VarAppHost, Value: p.res.AppHost},
			{Name: render.VarAppURLStyle, Value: p.res.URLStyle},
		}, clusterVariables(c)...),
	}
	if template != nil {
		req.TemplateID = template.ID
	}
	version, err := p.client.CreateTemplateVersion(ctx, org.ID, req)
	if err != nil {
		return p.fail("create the template version", err)
	}
	p.res.VersionID, p.res.VersionName = version.ID, version.Name
	p.warnProvisioners(version)
	if version, err = p.follow(ctx, version); err != nil {
		return err
	}
	if version.Job.Status != codersdk.ProvisionerJobSucceeded {
		msg := version.Job.Error
		if msg == "" {
			msg = "no error message"
		}
		return fmt.Errorf("push: the template version's build %s: %s", version.Job.Status, oneLine(msg))
	}

	if template == nil {
		t, err := p.client.CreateTemplate(ctx, org.ID, codersdk.CreateTemplateRequest{
			Name: p.o.Name, Description: c.Template.Description, VersionID: version.ID,
		})
		if err != nil {
			if statusOf(err) == http.StatusConflict {
				return fmt.Errorf("push: a template named %q already exists in organization %s, but this user cannot see it (409: %s)", p.o.Name, org.Name, sdkMessage(err))
			}
			return p.fail("create template "+p.o.Name, err)
		}
		p.res.TemplateID, p.res.Created, p.res.Activated = t.ID, true, true
		p.logf("Created template %s with version %s", p.o.Name, version.Name)
		return nil
	}
	p.res.TemplateID = template.ID
	if !p.o.Activate {
		p.logf("Added version %s to template %s (not active: --activate makes it so)", version.Name, p.o.Name)
		return nil
	}
	if err := p.client.UpdateActiveTemplateVersion(ctx, template.ID, codersdk.UpdateActiveTemplateVersion{ID: version.ID}); err != nil {
		return p.fail("activate version "+version.Name, err)
	}
	p.res.Activated = true
	p.logf("Version %s is now the active version of template %s", version.Name, p.o.Name)
	return nil
}

// organization is the configured one, else the user's default one.
func (p *pusher) organization(ctx context.Context) (codersdk.Organization, error) {
	if name := p.o.Config.Coder.Organization; name != "" {
		org, err := p.client.OrganizationByUserAndName(ctx, codersdk.Me, name)
		if err != nil {
			if statusOf(err) == http.StatusNotFound {
				return org, fmt.Errorf("push: coder.organization: %q is not an organization of this user", name)
			}
			return org, p.fail("look up organization "+name, err)
		}
		return org, nil
	}
	orgs, err := p.client.OrganizationsByUser(ctx, codersdk.Me)
	if err != nil {
		return codersdk.Organization{}, p.fail("list your organizations", err)
	}
	for _, org := range orgs {
		if org.IsDefault || len(orgs) == 1 {
			return org, nil
		}
	}
	return codersdk.Organization{}, errors.New("push: this user has no default organization: set coder.organization")
}

// appSettings settles the app host and URL style: the configured ones,
// else the deployment's.
func (p *pusher) appSettings(ctx context.Context, info codersdk.BuildInfoResponse) error {
	c := p.o.Config
	host, err := p.client.AppHost(ctx)
	if err != nil {
		return p.fail("ask for the app host", err)
	}
	switch {
	case c.AppHost != "":
		p.res.AppHost = c.AppHost
		if host.Host != "" && host.Host != c.AppHost {
			p.logf("Warning: app_host is %s but the deployment serves apps on %s", c.AppHost, host.Host)
		}
	case host.Host == "":
		return errors.New("push: the deployment has no wildcard app host (CODER_WILDCARD_ACCESS_URL), which subdomain apps need; set it, or app_host")
	default:
		if err := config.CheckAppHost(host.Host); err != nil {
			return fmt.Errorf("push: the deployment's app host: %w", err)
		}
		p.res.AppHost = host.Host
	}
	p.res.URLStyle = c.AppURLStyle
	if p.res.URLStyle == "" {
		p.res.URLStyle = URLStyleFor(info.Version)
	}
	return nil
}

// URLStyleFor picks the app URL style a Coder version makes: short from
// ShortURLsSince on, else the agent form every version accepts.
func URLStyleFor(version string) string {
	v := semver.Canonical(strings.SplitN(version, "+", 2)[0])
	if v != "" && semver.Prerelease(v) == "" && semver.Compare(v, ShortURLsSince) >= 0 {
		return config.URLStyleShort
	}
	return config.URLStyleAgent
}

// warnProvisioners says so when no provisioner daemon can take the
// version's pending job: the build would wait for one.
func (p *pusher) warnProvisioners(v codersdk.TemplateVersion) {
	mp := v.MatchedProvisioners
	if mp == nil || v.Job.Status != codersdk.ProvisionerJobPending {
		return
	}
	switch {
	case mp.Count == 0:
		p.logf("Warning: no provisioner daemon matches the job's tags %v; the build waits until one does", v.Job.Tags)
	case mp.Available == 0:
		p.logf("Warning: the %d provisioner daemons for this job are all busy or stopped; the build waits", mp.Count)
	}
}

// follow prints the version's build logs until the job ends and returns
// the version as it ended.
func (p *pusher) follow(ctx context.Context, v codersdk.TemplateVersion) (codersdk.TemplateVersion, error) {
	p.logf("Building version %s:", v.Name)
	logs, closer, err := p.client.TemplateVersionLogsAfter(ctx, v.ID, 0)
	if err != nil {
		return v, p.fail("follow the build logs", err)
	}
	defer closer.Close()
	for l := range logs {
		if l.Stage != "" && l.Output == "" {
			p.logf("  == %s", l.Stage)
			continue
		}
		p.logf("  %s", l.Output)
	}
	interval := p.o.PollInterval
	if interval == 0 {
		interval = time.Second
	}
	for {
		v, err = p.client.TemplateVersion(ctx, v.ID)
		if err != nil {
			return v, p.fail("read the template version", err)
		}
		switch v.Job.Status {
		case codersdk.ProvisionerJobPending, codersdk.ProvisionerJobRunning, codersdk.ProvisionerJobCanceling:
		default:
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("push: waiting for the build: %w", ctx.Err())
		case <-time.After(interval):
		}
	}
}

// fail describes an error from the deployment on one line.
func (p *pusher) fail(what string, err error) error {
	var sdkErr *codersdk.Error
	if errors.As(err, &sdkErr) {
		if sdkErr.StatusCode() == http.StatusUnauthorized {
			return fmt.Errorf("push: %s: the deployment refused the session token (401: %s); check CODER_SESSION_TOKEN", what, sdkMessage(err))
		}
		return fmt.Errorf("push: %s: %d: %s", what, sdkErr.StatusCode(), sdkMessage(err))
	}
	var netErr net.Error
	var urlErr *url.Error
	if errors.As(err, &netErr) || errors.As(err, &urlErr) {
		return fmt.Errorf("push: %s: cannot reach Coder at %s: %s", what, p.o.Config.Coder.URL, oneLine(rootCause(err).Error()))
	}
	return fmt.Errorf("push: %s: %s", what, oneLine(err.Error()))
}

func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

func statusOf(err error) int {
	var sdkErr *codersdk.Error
	if errors.As(err, &sdkErr) {
		return sdkErr.StatusCode()
	}
	return 0
}

// sdkMessage is an API error's message and detail, on one line.
func sdkMessage(err error) string {
	var sdkErr *codersdk.Error
	if !errors.As(err, &sdkErr) {
		return oneLine(err.Error())
	}
	msg := sdkErr.Message
	if sdkErr.Detail != "" {
		msg += " (" + sdkErr.Detail + ")"
	}
	for _, v := range sdkErr.Validations {
		msg += "; " + v.Field + ": " + v.Detail
	}
	return oneLine(msg)
}

func codersdkName(name string) error {
	if err := codersdk.NameValid(name); err != nil {
		return fmt.Errorf("push: --name %q is not a valid template name: %s", name, oneLine(err.Error()))
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
