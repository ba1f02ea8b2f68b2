//go:build e2e

package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/coder/coder/v2/codersdk"
)

// The steps every workspace test takes the same way, whatever runs the
// workspace (Docker, Kubernetes, Coder's own template with the module).

// slotprovTemplate writes slots.yaml with yaml, renders it into a
// template directory, validates that with the real Terraform and pushes it
// to Coder with slotprov as the active version of template name; it
// returns the directory, the config file and the template.
func (w *world) slotprovTemplate(ctx context.Context, t *testing.T, name, dir, yaml string, figs *figures) (tpl, cfg string, tmpl codersdk.Template) {
	t.Helper()
	tpl = filepath.Join(w.tmp, dir)
	cfg = filepath.Join(w.tmp, dir+".yaml")
	writeFile(t, cfg, yaml)
	mustRun(ctx, t, nil, w.slotprov(), "render", "-c", cfg, "-o", tpl)
	mustRun(ctx, t, nil, w.slotprov(), "validate", tpl, "--terraform-config", w.terraformrc())
	start := time.Now()
	mustRun(ctx, t, w.coderEnv(), w.slotprov(), "push", tpl, "-c", cfg, "--name", name, "--activate")
	figs.add("slotprov push → template active", time.Since(start))
	return tpl, cfg, w.template(ctx, t, name)
}

// slotprov is the slotprov make build made.
func (w *world) slotprov() string { return filepath.Join(w.root, "bin", "slotprov") }

// terraformrc is the CLI config of make tf-mirror's provider mirror.
func (w *world) terraformrc() string {
	return filepath.Join(w.root, ".cache", "tf-mirror", "terraformrc")
}

// coderEnv is what the coder CLI and slotprov need to reach the server.
func (w *world) coderEnv() []string {
	return []string{"CODER_URL=" + w.url, "CODER_SESSION_TOKEN=" + w.token}
}

// template is the template name of the default organization.
func (w *world) template(ctx context.Context, t *testing.T, name string) codersdk.Template {
	t.Helper()
	org, err := w.client.OrganizationByName(ctx, codersdk.DefaultOrganization)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := w.client.TemplateByName(ctx, org.ID, name)
	if err != nil {
		t.Fatalf("template %s: %v", name, err)
	}
	return tmpl
}

// createWorkspace creates a workspace of tmpl named name and waits for its
// build to succeed; the workspace is deleted when the test ends unless
// the test deleted it.
func (w *world) createWorkspace(ctx context.Context, t *testing.T, tmpl codersdk.Template, name string) codersdk.Workspace {
	t.Helper()
	ws, err := w.client.CreateUserWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: name})
	if err != nil {
		t.Fatalf("create workspace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if now, err := w.client.Workspace(context.Background(), ws.ID); err == nil && now.LatestBuild.Transition != codersdk.WorkspaceTransitionDelete {
			w.deleteWorkspace(t, ws.ID)
		}
	})
	w.waitBuild(ctx, t, ws.LatestBuild.ID)
	return ws
}

// checkProxied checks the panel and slot b's placeholder through Coder's
// subdomain proxy.
func (w *world) checkProxied(ctx context.Context, t *testing.T) {
	t.Helper()
	if body := w.mustGet(ctx, t, "admin", "/", http.StatusOK); !strings.Contains(body, "slot-b") && !strings.Contains(body, "Slot B") {
		t.Fatalf("the panel through Coder does not list the slots:\n%.400s", body)
	}
	if body := w.mustGet(ctx, t, "slot-b", "/", http.StatusOK); !strings.Contains(body, "admin--"+workspaceName+"--"+owner) {
		t.Fatalf("slot b's placeholder through Coder does not link the panel's URL:\n%.400s", body)
	}
}

// deployApp deploys the e2e app (repo's main) into slot a through the
// panel's API behind Coder's proxy and checks that slot a serves it, and
// the deploy's release; it returns the deploy's record and the app's page.
func (w *world) deployApp(ctx context.Context, t *testing.T, repo string, figs *figures) (deployRecord, string) {
	t.Helper()
	start := time.Now()
	rec := w.deploy(ctx, t, "a", repo, "main")
	figs.add("deploy through the panel's API (git fetch, npm ci, health gate, cutover)", time.Since(start))
	body := w.mustGet(ctx, t, "slot-a", "/", http.StatusOK)
	if !strings.Contains(body, "e2e-app is-number=true slot=a") {
		t.Fatalf("slot a through Coder does not serve the app:\n%.400s", body)
	}
	if got := w.currentRelease(ctx, t, "a"); got != rec.Release {
		t.Fatalf("slot a serves release %q, the deploy made %q", got, rec.Release)
	}
	return rec, body
}

// startServing starts the stopped workspace, calls started once its build
// is done (to follow the new container's log), and waits until slot a
// serves appBody from release again, with no step by hand.
func (w *world) startServing(ctx context.Context, t *testing.T, id uuid.UUID, appBody, release string, figs *figures, started func()) {
	t.Helper()
	start := time.Now()
	w.transition(ctx, t, id, codersdk.WorkspaceTransitionStart)
	started()
	w.waitServing(ctx, t, "slot-a", appBody)
	figs.add("start → app serving through Coder", time.Since(start))
	if got := w.currentRelease(ctx, t, "a"); got != release {
		t.Fatalf("after the restart slot a serves %q, before it served %q", got, release)
	}
}
