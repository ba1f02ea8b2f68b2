package admin_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDeployPageInARealBrowser: a deploy's page follows its log live while
// it runs (a build held open by the test) and shows its trigger, stages
// and outcome once it ends; a failed deploy's page shows its error line;
// the slot page's recent deploys link to their pages; an older deploy's
// page rolls back to its release with its button and lands on the
// rollback's page; an unknown deploy is an error page; the page fits a
// 390 px phone.
func TestDeployPageInARealBrowser(t *testing.T) {
	ctx, agent, proxy, bare := startPanel(t)
	admin := proxy.url("admin--dev--alice")
	first := agent.deployAndWait(t, bare, "main")
	agent.deployAndWait(t, bare, "next")

	gate := filepath.Join(t.TempDir(), "gate")
	body, _ := json.Marshal(map[string]string{"repo": bare, "ref": "next",
		"build": "echo build step one; while [ ! -e '" + gate + "' ]; do sleep 0.1; done; echo build step two"})
	var rec struct{ ID, Page string }
	if code := agent.api(t, "POST", "/api/slots/a/deploy", string(body), &rec); code != 202 || rec.Page != "deploys/"+rec.ID {
		t.Fatalf("deploy: %d %+v", code, rec)
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(admin+rec.Page)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#deploy-log", "build step one", 30*time.Second)
	waitText(t, ctx, "#deploy-status", "running", time.Second)
	waitText(t, ctx, "#deploy-trigger", "from the panel", time.Second)
	waitText(t, ctx, ".stage-list", "under way", 5*time.Second)
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	log := waitText(t, ctx, "#deploy-log", "deploy succeeded", time.Minute)
	if strings.Index(log, "build step one") > strings.Index(log, "build step two") {
		t.Fatalf("log out of order:\n%s", log)
	}
	waitText(t, ctx, "#deploy-status", "succeeded", 5*time.Second)
	waitText(t, ctx, "#deploy-subject", "v2", 5*time.Second)
	// The badge says so at the log's end; the card follows at its refresh.
	waitText(t, ctx, "#deploy-card h2", "succeeded", 5*time.Second)
	stages := waitText(t, ctx, ".stage-list", "health", 5*time.Second)
	if strings.Contains(stages, "under way") || !strings.Contains(stages, "build") {
		t.Fatalf("stages of a finished deploy: %q", stages)
	}
	shot(t, ctx, "", "screenshot-deploy.png")

	// A failed deploy: its error line.
	var failed struct{ ID, Page string }
	if code := agent.api(t, "POST", "/api/slots/a/deploy", `{"repo":"`+bare+`","ref":"no-such-branch"}`, &failed); code != 202 {
		t.Fatalf("deploy of a missing branch: %d", code)
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(admin+failed.Page)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#deploy-status", "failed", 30*time.Second)
	waitText(t, ctx, "#deploy-error", "no-such-branch", 5*time.Second)

	// The slot page's recent deploys link to the pages.
	var links []string
	if err := chromedp.Run(ctx, chromedp.Navigate(admin+"slots/a"), chromedp.WaitVisible("ul.deploys a", chromedp.ByQuery),
		chromedp.Evaluate(`[...document.querySelectorAll('ul.deploys a')].map(a => a.getAttribute('href'))`, &links)); err != nil {
		t.Fatal(err)
	}
	if len(links) != 4 || links[0] != "../deploys/"+failed.ID || links[3] != "../deploys/"+first {
		t.Fatalf("recent deploys link to %q", links)
	}
	// … and say what each deployed: its commit's subject.
	if recent := waitText(t, ctx, "ul.deploys", "deploy · v1", time.Second); !strings.Contains(recent, "deploy · v2") {
		t.Fatalf("recent deploys without the commits' subjects: %q", recent)
	}

	// The first deploy's release is kept and does not serve: roll back to
	// it from its page.
	if err := chromedp.Run(ctx, chromedp.Navigate(admin+"deploys/"+first),
		chromedp.WaitVisible("button[data-rollback]", chromedp.ByQuery), chromedp.Click("button[data-rollback]", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#deploy-trigger", "rollback from the panel", 10*time.Second)
	waitText(t, ctx, "#deploy-subject", "v1", time.Second)
	waitText(t, ctx, "#deploy-status", "succeeded", time.Minute)
	if text := pageText(t, ctx, proxy.url("slot-a--dev--alice")); !strings.Contains(text, "hello v1") {
		t.Fatalf("slot URL after the rollback from the deploy page: %q", text)
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(admin+"deploys/"+first), chromedp.WaitVisible("#deploy-card .badge", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	var buttons int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll('button[data-rollback]').length`, &buttons)); err != nil || buttons != 0 {
		t.Fatalf("the page of the release that serves offers %d rollback buttons", buttons)
	}

	if text := pageText(t, ctx, admin+"deploys/a-nope"); !strings.Contains(text, `unknown deploy "a-nope"`) || !strings.Contains(text, "Back to the panel") {
		t.Fatalf("unknown deploy: %q", text)
	}

	var width, inner int
	if err := chromedp.Run(ctx, chromedp.EmulateViewport(390, 844), chromedp.Navigate(admin+rec.Page), chromedp.WaitVisible("#deploy-log", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#deploy-log", "deploy succeeded", 10*time.Second)
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.documentElement.scrollWidth`, &width), chromedp.Evaluate(`window.innerWidth`, &inner)); err != nil {
		t.Fatal(err)
	}
	if width > inner {
		t.Errorf("the deploy page is %d px wide on a %d px screen", width, inner)
	}
	shot(t, ctx, "", "screenshot-deploy-phone.png")
}
