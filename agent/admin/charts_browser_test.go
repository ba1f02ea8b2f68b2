package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
)

// agentAPI calls the agent's admin port straight (no browser: same-origin
// checks pass without an Origin) and decodes the answer into v.
func (a *agentProcess) api(t *testing.T, method, path, body string, v any) int {
	t.Helper()
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", a.ports["admin"], path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// deployAndWait deploys ref of repo into slot a and waits until it succeeded.
func (a *agentProcess) deployAndWait(t *testing.T, repo, ref string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"repo": repo, "ref": ref})
	var rec struct{ ID, Status, Error string }
	if code := a.api(t, "POST", "/api/slots/a/deploy", string(body), &rec); code != 202 {
		t.Fatalf("deploy %s: %d %+v", ref, code, rec)
	}
	for deadline := time.Now().Add(time.Minute); rec.Status != "succeeded"; time.Sleep(100 * time.Millisecond) {
		if rec.Status == "failed" || time.Now().After(deadline) {
			t.Fatalf("deploy %s: %+v", ref, rec)
		}
		a.api(t, "GET", "/api/deploys/"+rec.ID, "", &rec)
	}
	return rec.ID
}

// hits sends n GETs of path to slot a and checks their status.
func (a *agentProcess) hits(t *testing.T, path string, n, want int) {
	t.Helper()
	for range n {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", a.ports["a"], path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// traffic returns a function that sends GET / to slot a for a while, at
// a rate that swells and ebbs over a few minutes.
func (a *agentProcess) traffic(t *testing.T) func(time.Duration) {
	start := time.Now()
	return func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
			phase := time.Since(start).Seconds() / 40
			a.hits(t, "/", 2+int(8*(1+math.Sin(phase))), 200)
		}
	}
}

// historyOfA is what GET /api/slots/a/history says, in part.
type historyOfA struct {
	Status5xx []int `json:"status_5xx"`
	Requests  []int `json:"requests"`
	Events    []struct {
		Kind     string `json:"kind"`
		DeployID string `json:"deploy_id"`
	} `json:"events"`
}

func sum(v []int) (n int) {
	for _, x := range v {
		n += x
	}
	return n
}

// TestHistoryChartsInARealBrowser: traffic with some 500s, two deploys and
// a crash show on slot a's page as charts with markers (each deploy's
// linking to its record) and a non-zero error series between the deploys,
// where the 500s were; the dashboard shows slot a's sparklines and error
// rate; both pages fit a 390 px phone.
func TestHistoryChartsInARealBrowser(t *testing.T) {
	ctx, agent, proxy, bare := startPanel(t)
	admin := proxy.url("admin--dev--alice")

	// For the screenshots, over two minutes of traffic around the events
	// (the browser's context lasts four), so that the charts show more
	// than one column.
	demo := func(time.Duration) {}
	if os.Getenv("UPDATE_SCREENSHOTS") != "" {
		demo = agent.traffic(t)
	}
	first := agent.deployAndWait(t, bare, "main")
	demo(80 * time.Second)
	agent.hits(t, "/", 30, 200)
	agent.hits(t, "/fail", 10, 500)
	second := agent.deployAndWait(t, bare, "next")
	demo(30 * time.Second)
	agent.hits(t, "/", 20, 200)
	agent.hits(t, "/crash", 1, 200)
	var h historyOfA
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if code := agent.api(t, "GET", "/api/slots/a/history?range=1h", "", &h); code != 200 {
			t.Fatalf("history: %d", code)
		}
		if len(h.Events) == 3 || time.Now().After(deadline) {
			break
		}
	}
	testkit.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/health", agent.ports["a"]), 200, 10*time.Second)
	agent.hits(t, "/", 10, 200)
	demo(30 * time.Second)
	if sum(h.Status5xx) != 10 || sum(h.Requests) < 61 || len(h.Events) != 3 || h.Events[0].DeployID != first ||
		h.Events[1].DeployID != second || h.Events[2].Kind != "crash" {
		t.Fatalf("history of slot a: %d 5xx, %d requests, events %+v", sum(h.Status5xx), sum(h.Requests), h.Events)
	}

	// The slot page: four charts, each with a title; the deploys' and the
	// crash's markers; the 500s in the error series, between the deploys.
	if err := chromedp.Run(ctx, chromedp.Navigate(admin+"slots/a"), chromedp.WaitVisible("#history svg.chart", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Charts, Titled, Deploys, Crashes int
		Hrefs                            []string
		ErrPath                          string
		Fail                             []float64 // columns whose title counts 5xx
		FailCount                        int       // the 5xx they count
		DeployX                          []float64
	}
	const probe = `(() => {
	  const charts = [...document.querySelectorAll('#history svg.chart')];
	  const req = charts[0];
	  const out = {Charts: charts.length, Titled: charts.filter(c => c.firstElementChild.tagName === 'title' && c.firstElementChild.textContent).length,
	    Deploys: req.querySelectorAll('a.marker.ev-deploy').length, Crashes: req.querySelectorAll('.marker.ev-crash').length,
	    Hrefs: [...req.querySelectorAll('a.marker.ev-deploy')].map(a => a.getAttribute('href')),
	    ErrPath: (req.querySelector('path.err') || {getAttribute: () => ''}).getAttribute('d'),
	    Fail: [], FailCount: 0,
	    DeployX: [...req.querySelectorAll('a.marker.ev-deploy line')].map(l => Number(l.getAttribute('x1')))};
	  for (const r of req.querySelectorAll(':scope > rect.hit')) {
	    const m = r.textContent.match(/(\d+) 5xx/);
	    if (m && Number(m[1]) > 0) { out.Fail.push(Number(r.getAttribute('x'))); out.FailCount += Number(m[1]); }
	  }
	  return out;
	})()`
	if err := chromedp.Run(ctx, chromedp.Evaluate(probe, &got)); err != nil {
		t.Fatal(err)
	}
	if got.Charts != 4 || got.Titled != 4 || got.Deploys != 2 || got.Crashes != 1 || got.ErrPath == "" || got.FailCount != 10 {
		t.Fatalf("slot page charts: %+v", got)
	}
	for i, id := range []string{first, second} {
		if want := "../deploys/" + id; got.Hrefs[i] != want {
			t.Errorf("deploy marker %d links to %q, want %q", i, got.Hrefs[i], want)
		}
	}
	for _, x := range got.Fail { // column x covers [x, x+1]; the 500s came between the deploys
		if x > got.DeployX[1] || x+1 < got.DeployX[0] {
			t.Errorf("5xx in column %v, outside the deploys at %v", x, got.DeployX)
		}
	}
	shot(t, ctx, "#history", "screenshot-charts-slot.png")

	// 24 h: the same events, one-minute columns; a bad range is refused.
	var day int
	if err := chromedp.Run(ctx, chromedp.Click(`a[href="?range=24h"]`, chromedp.ByQuery), chromedp.WaitVisible("#history svg.chart", chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll('#history figure:first-of-type .marker').length`, &day)); err != nil || day != 3 {
		t.Fatalf("24 h markers: %d %v", day, err)
	}
	if text := pageText(t, ctx, admin+"slots/a?range=7d"); !strings.Contains(text, "1h or 24h") {
		t.Fatalf("?range=7d: %q", text)
	}

	// The dashboard: slot a's sparklines and error rate.
	var dash struct {
		Sparks int
		Rate   string
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(admin), chromedp.WaitVisible("svg.spark", chromedp.ByQuery),
		chromedp.Evaluate(`(() => { const row = document.querySelector('a[href="./slots/a"]').closest('tr');
		  return {Sparks: row.querySelectorAll('svg.spark title').length, Rate: row.lastElementChild.textContent}; })()`, &dash)); err != nil {
		t.Fatal(err)
	}
	if dash.Sparks < 2 || !strings.HasSuffix(dash.Rate, "%") {
		t.Fatalf("dashboard row of slot a: %+v", dash)
	}
	shot(t, ctx, "", "screenshot-charts-dashboard.png")

	// A 390 px phone: nothing wider than the screen.
	for _, page := range []string{admin, admin + "slots/a"} {
		var width, inner int
		if err := chromedp.Run(ctx, chromedp.EmulateViewport(390, 844), chromedp.Navigate(page), chromedp.WaitVisible("svg", chromedp.ByQuery),
			chromedp.Evaluate(`document.documentElement.scrollWidth`, &width), chromedp.Evaluate(`window.innerWidth`, &inner)); err != nil {
			t.Fatal(err)
		}
		if width > inner {
			t.Errorf("%s is %d px wide on a %d px screen", page, width, inner)
		}
	}
	shot(t, ctx, "#history", "screenshot-charts-phone.png")
}

// shot saves a screenshot of the element sel (the whole page when empty)
// into docs/ when UPDATE_SCREENSHOTS is set.
func shot(t *testing.T, ctx context.Context, sel, name string) {
	t.Helper()
	if os.Getenv("UPDATE_SCREENSHOTS") == "" {
		return
	}
	if sel == "" {
		screenshot(t, ctx, name)
		return
	}
	var png []byte
	if err := chromedp.Run(ctx, chromedp.Screenshot(sel, &png, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot of %s is not a PNG", sel)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
