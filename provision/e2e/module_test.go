//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/coder/coder/v2/codersdk"
)

// The second workspace of make e2e: Coder's own examples/templates/docker,
// with coder-slots added as a module by one block.
const (
	// stockImage is the image Coder's docker template names; the test
	// tags a local base (Debian with git, Node.js, curl and PostgreSQL, a
	// user coder, no slotagent) with it.
	stockImage     = "codercom/enterprise-base:ubuntu"
	moduleTemplate = "docker-with-slots"
	// stopGrace is the one line a template admin adds for clean stops.
	stopGrace = 30
)

func TestModuleWorkspace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	w := newWorld(t)
	bases := w.dockerBases(ctx, t)
	step(t, "the stock template's image", func() error { return w.docker.stockBase(ctx, bases) })
	w.coderServer(ctx, t)
	var figs figures

	// make dist's archives, served on loopback (the workspace shares the
	// host's network).
	installURL, sum := serveDist(t, filepath.Join(w.root, "dist"))

	// The module, rendered by slotprov and validated on its own.
	tpl := filepath.Join(w.tmp, "docker-template")
	cfg := filepath.Join(w.tmp, "slots-module.yaml")
	writeFile(t, cfg, fmt.Sprintf("target: module\napp_host: \"*.coder.localhost:%d\"\napp_url_style: short\n", w.port))
	mustRun(ctx, t, nil, w.slotprov(), "render", "-c", cfg, "-o", filepath.Join(tpl, "coder-slots"))
	mustRun(ctx, t, nil, w.slotprov(), "validate", filepath.Join(tpl, "coder-slots"), "--terraform-config", w.terraformrc())

	// Coder's template, changed only where this machine needs it, plus the
	// module block; the whole template validated with the real Terraform.
	stock := w.stockTemplate(t)
	writeFile(t, filepath.Join(tpl, "main.tf"), string(withSlots(t, stock, installURL, sum, false)))
	mustRun(ctx, t, nil, w.slotprov(), "validate", tpl, "--terraform-config", w.terraformrc())
	coderEnv := w.coderEnv()
	cli := filepath.Join(w.tmp, "coder-cli")
	start := time.Now()
	mustRun(ctx, t, coderEnv, w.coderBin, "--global-config", cli, "templates", "push", moduleTemplate, "--directory", tpl, "--yes")
	figs.add("coder templates push (docker template + module) → active", time.Since(start))
	tmpl := w.template(ctx, t, moduleTemplate)

	start = time.Now()
	ws := w.createWorkspace(ctx, t, tmpl, workspaceName)
	w.waitHealthy(ctx, t, ws.ID)
	figs.add("create → agent ready, module's six apps healthy", time.Since(start))
	vol := w.volumeDir(ctx, t, ws.ID)
	w.containerLog = filepath.Join(vol, "data", "slotagent", "logs", "slotagent.log")

	// The stock template's own features: its startup script and its env.
	trySSH := func(line string) (string, error) {
		return command(ctx, "", coderEnv, nil, w.coderBin, "--global-config", cli, "ssh", workspaceName, "--", line)
	}
	ssh := func(line string) string {
		t.Helper()
		out, err := trySSH(line)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if _, err := os.Stat(filepath.Join(vol, ".init_done")); err != nil {
		t.Fatalf("the template's startup script did not run: %v", err)
	}
	out := ssh(`echo "author=$GIT_AUTHOR_NAME"; command -v slotagent; slotagent status`)
	if !strings.Contains(out, "author=End To End") {
		t.Fatalf("the template's env is not in the session:\n%s", out)
	}
	if !strings.Contains(out, "as a service beside the Coder agent") || strings.Contains(out, "pid 1,") {
		t.Fatalf("slotagent does not run as a service:\n%s", out)
	}

	// A deploy through the panel's API behind Coder's proxy, one with
	// slotagent deploy in a coder ssh session, and a row in slot a's
	// PostgreSQL database.
	repo := gitDaemon(ctx, t, w.tmp)
	rec, appBody := w.deployApp(ctx, t, repo, &figs)
	start = time.Now()
	ssh("slotagent deploy b --repo " + repo + " --ref main --wait")
	figs.add("slotagent deploy --wait in coder ssh", time.Since(start))
	if body := w.mustGet(ctx, t, "slot-b", "/", http.StatusOK); !strings.Contains(body, "slot=b") {
		t.Fatalf("slot b through Coder:\n%.400s", body)
	}
	release := rec.Release
	ssh(`psql "$(slotagent db a url)" -c 'CREATE TABLE e2e (x int); INSERT INTO e2e VALUES (42)'`)

	// Coder's template gives the container no stop grace: the stop kills
	// everything at once. The start must come back consistent anyway.
	start = time.Now()
	w.transition(ctx, t, ws.ID, codersdk.WorkspaceTransitionStop)
	figs.add("stop without a grace (SIGKILL)", time.Since(start))
	if log := tailFile(w.containerLog, 20); strings.Contains(log, "stopped cleanly") {
		t.Fatalf("the stop was clean: Coder's template gave a grace after all?\n%s", log)
	}
	start = time.Now()
	w.transition(ctx, t, ws.ID, codersdk.WorkspaceTransitionStart)
	w.waitServing(ctx, t, "slot-a", appBody)
	figs.add("start after SIGKILL → app serving through Coder", time.Since(start))
	w.checkConsistent(ctx, t, trySSH, release, rec.ID)

	// The one line a template admin adds: a stop grace. Then a stop is
	// clean.
	writeFile(t, filepath.Join(tpl, "main.tf"), string(withSlots(t, stock, installURL, sum, true)))
	mustRun(ctx, t, coderEnv, w.coderBin, "--global-config", cli, "templates", "push", moduleTemplate, "--directory", tpl, "--yes")
	tmpl = w.template(ctx, t, moduleTemplate)
	w.transition(ctx, t, ws.ID, codersdk.WorkspaceTransitionStop)
	start = time.Now()
	w.startVersion(ctx, t, ws.ID, tmpl.ActiveVersionID)
	w.waitServing(ctx, t, "slot-a", appBody)
	figs.add("start (template with destroy_grace_seconds) → app serving", time.Since(start))
	start = time.Now()
	w.transition(ctx, t, ws.ID, codersdk.WorkspaceTransitionStop)
	figs.add(fmt.Sprintf("stop with destroy_grace_seconds = %d (clean)", stopGrace), time.Since(start))
	w.checkCleanStop(t, vol)
	start = time.Now()
	w.transition(ctx, t, ws.ID, codersdk.WorkspaceTransitionStart)
	w.waitServing(ctx, t, "slot-a", appBody)
	figs.add("start after a clean stop → app serving", time.Since(start))
	w.checkConsistent(ctx, t, trySSH, release, rec.ID)

	header := fmt.Sprintf("Coder's docker template with the coder-slots module, a real Coder %s and Docker %s on this machine", w.coderVersion(ctx), w.dockerVersion(ctx))
	t.Logf("make e2e figures, %s:\n%s", header, figs.table())
}

// stockBase makes the image Coder's docker template names: the harness's
// Debian with git, Node.js, curl and PostgreSQL and a user coder, and no
// slotagent (the module installs it). Built once per base, then tagged.
func (e *dockerEngine) stockBase(ctx context.Context, bases baseTags) error {
	df := "FROM " + bases.debian + "\n" +
		"RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl git nodejs npm postgresql" +
		" && useradd --create-home --uid 1000 --user-group --shell /bin/bash coder && rm -rf /var/lib/apt/lists/*\n" +
		"USER coder\n"
	sum := sha256.Sum256([]byte(df))
	tag := "coder-slots-e2e/stock:" + hex.EncodeToString(sum[:4])
	if !e.hasImage(ctx, tag) {
		if err := e.buildDockerfile(ctx, df, tag); err != nil {
			return err
		}
	}
	_, err := e.docker(ctx, nil, "tag", tag, stockImage)
	return err
}

// serveDist serves make dist's folder on loopback and returns the module's
// install_url (with {arch}) and the amd64 archive's SHA-256.
func serveDist(t *testing.T, dist string) (string, string) {
	t.Helper()
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatalf("%v: make e2e runs make dist first", err)
	}
	var name, sum string
	for _, line := range strings.Split(string(sums), "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.HasSuffix(f[1], "_linux_amd64.tar.gz") {
			sum, name = f[0], f[1]
		}
	}
	if name == "" {
		t.Fatalf("no linux_amd64 archive in %s/SHA256SUMS", dist)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dist)))
	t.Cleanup(srv.Close)
	return srv.URL + "/" + strings.TrimSuffix(name, "amd64.tar.gz") + "{arch}.tar.gz", sum
}

// stockTemplate is Coder's examples/templates/docker/main.tf, from the
// source of the Coder the harness built.
func (w *world) stockTemplate(t *testing.T) []byte {
	t.Helper()
	version := strings.TrimPrefix(filepath.Base(w.coderBin), "coder-")
	b, err := os.ReadFile(filepath.Join(w.cache, "src-"+version, "examples", "templates", "docker", "main.tf"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withSlots is Coder's docker template changed where this machine needs it
// (each change logged): the registry modules dropped (no network here),
// the container on the host's network (dockerd has no bridge); then the
// module block, and with grace the stop grace.
func withSlots(t *testing.T, stock []byte, installURL, sum string, grace bool) []byte {
	t.Helper()
	f, diags := hclwrite.ParseConfig(stock, "main.tf", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("Coder's docker template: %s", diags.Error())
	}
	body := f.Body()
	for _, b := range body.Blocks() {
		if b.Type() == "module" {
			t.Logf("change to Coder's docker template: module %q removed (a registry module; no network here)", b.Labels()[0])
			body.RemoveBlock(b)
		}
	}
	ct := body.FirstMatchingBlock("resource", []string{"docker_container", "workspace"})
	if ct == nil {
		t.Fatal(`Coder's docker template has no resource "docker_container" "workspace"`)
	}
	ct.Body().SetAttributeValue("network_mode", cty.StringVal("host"))
	t.Log(`change to Coder's docker template: docker_container.workspace gets network_mode = "host" (this machine's dockerd has no bridge)`)
	t.Logf("change to Coder's docker template: none to its image %q: a local base is tagged with that name", stockImage)
	if grace {
		ct.Body().SetAttributeValue("destroy_grace_seconds", cty.NumberIntVal(stopGrace))
		t.Logf("the template admin's line for clean stops: destroy_grace_seconds = %d", stopGrace)
	}
	body.AppendNewline()
	m := body.AppendNewBlock("module", []string{"slots"}).Body()
	m.SetAttributeValue("source", cty.StringVal("./coder-slots"))
	m.SetAttributeTraversal("agent_id", hcl.Traversal{hcl.TraverseRoot{Name: "coder_agent"}, hcl.TraverseAttr{Name: "main"}, hcl.TraverseAttr{Name: "id"}})
	m.SetAttributeValue("install_url", cty.StringVal(installURL))
	m.SetAttributeValue("install_sha256", cty.StringVal(sum))
	t.Logf("added to Coder's docker template:\n%s", m.BuildTokens(nil).Bytes())
	return hclwrite.Format(f.Bytes())
}

// checkConsistent: after a stop and a start the slot serves the same
// release, the deploy's record is there, slot a's database kept its row,
// and slotagent is a service again.
func (w *world) checkConsistent(ctx context.Context, t *testing.T, ssh func(string) (string, error), release, deployID string) {
	t.Helper()
	if got := w.currentRelease(ctx, t, "a"); got != release {
		t.Fatalf("slot a serves %q, before the stop %q", got, release)
	}
	var rec deployRecord
	if err := json.Unmarshal([]byte(w.mustGet(ctx, t, "admin", "/api/deploys/"+deployID, http.StatusOK)), &rec); err != nil || rec.Status != "succeeded" {
		t.Fatalf("deploy record %s after the restart: %+v %v", deployID, rec, err)
	}
	// PostgreSQL may still be recovering when the apps serve again.
	var out string
	err := waitFor(ctx, 2*time.Minute, time.Second, "slot a's database row", func() error {
		var err error
		out, err = ssh(`psql "$(slotagent db a url)" -tAc 'SELECT x FROM e2e'; slotagent status`)
		// coder ssh ends its lines with \r\n.
		out = strings.ReplaceAll(out, "\r", "")
		if err == nil && !strings.Contains(out, "42\n") {
			err = fmt.Errorf("no row 42:\n%s", out)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "as a service") {
		t.Fatalf("slotagent is not a service after the restart:\n%s", out)
	}
}

// startVersion starts a workspace on a template version (an update).
func (w *world) startVersion(ctx context.Context, t *testing.T, id, version uuid.UUID) {
	t.Helper()
	b, err := w.client.CreateWorkspaceBuild(ctx, id, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStart, TemplateVersionID: version})
	if err != nil {
		t.Fatalf("start on version %s: %v", version, err)
	}
	w.waitBuild(ctx, t, b.ID)
}
