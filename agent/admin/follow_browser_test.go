package admin_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// click clicks the element sel once it is visible.
func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	if err := chromedp.Run(ctx, chromedp.WaitVisible(sel, chromedp.ByQuery), chromedp.Click(sel, chromedp.ByQuery)); err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
}

// waitServes waits until the app behind url answers with want in it.
func waitServes(t *testing.T, url, want string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer %q within 90s", url, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFollowControlsInARealBrowser: the slot page's follow controls and
// the dashboard's preview form, clicked in Chromium, against a real agent
// and a bare repository moved by real git. Follow its branch turns
// following on; Check now deploys a new tip at once; a rollback pauses
// following (and is not undone) until Resume following deploys the tip;
// Stop following turns it off. The preview form puts a branch into a free
// slot that follows it (and shows a refusal in words); once the branch is
// deleted upstream, Check now on that slot frees it.
func TestFollowControlsInARealBrowser(t *testing.T) {
	ctx, agent, proxy, bare := startPanel(t)
	admin := proxy.url("admin--dev--alice")
	slotA := fmt.Sprintf("http://127.0.0.1:%d/", agent.ports["a"])
	agent.deployAndWait(t, bare, "main")

	if err := chromedp.Run(ctx, chromedp.Navigate(admin+"slots/a")); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, `button[data-follow="on"]`)
	waitText(t, ctx, "#follow", "follows main of", 10*time.Second)
	waitText(t, ctx, "#follow-message", "the tip of branch main", 30*time.Second)

	// main moves to next's commit (v2): Check now deploys it.
	run(t, ".", "git", "--git-dir="+bare, "update-ref", "refs/heads/main", "refs/heads/next")
	click(t, ctx, `button[data-follow="check"]`)
	waitServes(t, slotA, "hello v2")
	var recs struct {
		Deploys []struct{ ID, Trigger, Status string }
	}
	agent.api(t, "GET", "/api/slots/a/deploys", "", &recs)
	if recs.Deploys[0].Trigger != "follow" {
		t.Fatalf("the newest deploy after Check now: %+v", recs.Deploys[0])
	}

	// A rollback from the releases table: following pauses, v1 stays.
	waitText(t, ctx, "#follow-message", "serving", 60*time.Second)
	click(t, ctx, `button[data-rollback]`)
	waitText(t, ctx, "#follow", "paused", 60*time.Second)
	waitServes(t, slotA, "hello v1")
	click(t, ctx, `button[data-follow="check"]`)
	waitText(t, ctx, "#follow-message", "took control", 10*time.Second)
	if b := pageText(t, ctx, slotA); !strings.Contains(b, "hello v1") {
		t.Fatalf("a check while paused redeployed: %q", b)
	}

	// Resume deploys the tip; Stop following turns it off.
	if err := chromedp.Run(ctx, chromedp.Navigate(admin+"slots/a")); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, `#follow button[data-follow="on"]`)
	waitServes(t, slotA, "hello v2")
	waitText(t, ctx, "#follow-message", "serving", 60*time.Second)
	click(t, ctx, `button[data-follow="off"]`)
	waitText(t, ctx, "#follow", "Deploys only when asked", 10*time.Second)
	var st struct{ On bool }
	if agent.api(t, "GET", "/api/slots/a/follow", "", &st); st.On {
		t.Fatal("Stop following left following on")
	}

	// The dashboard's preview form: a bad branch is refused in words; a
	// good one goes into the first free slot, b.
	if err := chromedp.Run(ctx, chromedp.Navigate(admin), chromedp.WaitVisible("#preview-form", chromedp.ByQuery),
		chromedp.SendKeys(`#preview-form input[name="repo"]`, bare, chromedp.ByQuery),
		chromedp.SendKeys(`#preview-form input[name="branch"]`, "no..such", chromedp.ByQuery),
		chromedp.Click(`#preview-form button[type="submit"]`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#error", "no..such", 10*time.Second)
	if err := chromedp.Run(ctx, chromedp.SetValue(`#preview-form input[name="branch"]`, "next", chromedp.ByQuery),
		chromedp.Click(`#preview-form input[name="release_on_delete"]`, chromedp.ByQuery),
		chromedp.Click(`#preview-form button[type="submit"]`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#preview-result", "slot b now follows next", 10*time.Second)
	slotB := fmt.Sprintf("http://127.0.0.1:%d/", agent.ports["b"])
	waitServes(t, slotB, "hello v2")

	// next deleted upstream: Check now on slot b's page frees it.
	click(t, ctx, `#preview-result a`)
	waitText(t, ctx, "#follow", "follows next of", 10*time.Second)
	waitText(t, ctx, "#follow-message", "serving", 60*time.Second)
	run(t, ".", "git", "--git-dir="+bare, "update-ref", "-d", "refs/heads/next")
	click(t, ctx, `button[data-follow="check"]`)
	waitServes(t, slotB, "ready for deployment")
	waitText(t, ctx, "#follow", "Deploys only when asked", 30*time.Second)
}
