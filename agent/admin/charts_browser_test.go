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

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
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

// chartProbe is what the slot page's charts show, read in the browser.
type chartProbe struct {
	Charts, YLabels, Marks, ErrPaths int
	Hrefs, Kinds, XLabels            []string
	Caption                          string
	Columns, Off, Rows               int
	Fail                             int // the data row whose tip counts the most 5xx
	FailCount                        int
	CaptionsCut                      int // captions wider than their box
	Tops                             []float64
}

const chartProbeJS = `(() => {
  const charts = [...document.querySelectorAll('#history svg.chart')];
  const lane = document.querySelector('#history svg.lane');
  const box = document.querySelector('#history .charts');
  const tips = box ? JSON.parse(box.dataset.tips) : {columns: 0, off: 0, rows: []};
  const out = {Charts: charts.length,
    YLabels: Math.min(...[...document.querySelectorAll('#history svg.yaxis')].map(y => y.querySelectorAll('text').length)),
    Marks: lane ? lane.querySelectorAll('.mark').length : 0,
    ErrPaths: document.querySelectorAll('#history svg.chart path.err').length,
    Hrefs: lane ? [...lane.querySelectorAll('a.mark')].map(a => a.getAttribute('href')) : [],
    Kinds: lane ? [...lane.querySelectorAll('.mark')].map(m => m.getAttribute('class').replace('mark ev-', '')) : [],
    XLabels: [...(document.querySelector('#history svg.xaxis') || document).querySelectorAll('text')].map(t => t.textContent),
    Caption: (document.querySelector('#history p.muted') || {textContent: ''}).textContent,
    Columns: tips.columns, Off: tips.off, Rows: tips.rows.length, Fail: -1, FailCount: 0,
    CaptionsCut: [...document.querySelectorAll('#history figcaption')].filter(f => f.scrollWidth > f.clientWidth + 1).length,
    Tops: charts.map(c => c.getBoundingClientRect().top)};
  tips.rows.forEach((r, i) => { const m = r.l[0].match(/(\d+) 5xx/); if (m && Number(m[1]) > out.FailCount) { out.Fail = i; out.FailCount = Number(m[1]); } });
  return out;
})()`

// pointAt is the page position of data row i of the first chart.
func pointAt(t *testing.T, ctx context.Context, i int) (x, y float64) {
	t.Helper()
	var p struct{ X, Y float64 }
	if err := chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(`(() => {
	  const d = JSON.parse(document.querySelector('#history .charts').dataset.tips);
	  const r = document.querySelector('#history .area').getBoundingClientRect();
	  return {X: r.left + (d.off + %d + 0.5) / d.columns * r.width, Y: r.top + r.height / 2};
	})()`, i), &p)); err != nil {
		t.Fatal(err)
	}
	return p.X, p.Y
}

// tipState is the crosshair tip's text (empty when hidden) and the number
// of crosshair lines on the page.
func tipState(t *testing.T, ctx context.Context) (string, int) {
	t.Helper()
	var st struct {
		Text  string
		Lines int
	}
	if err := chromedp.Run(ctx, chromedp.Evaluate(`(() => { const tip = document.querySelector('#history .tip');
	  return {Text: tip && !tip.hidden ? tip.textContent : '', Lines: document.querySelectorAll('#history .crosshair').length}; })()`, &st)); err != nil {
		t.Fatal(err)
	}
	return st.Text, st.Lines
}

// waitTip waits until the tip's text contains want ("" for hidden) with
// lines crosshair lines.
func waitTip(t *testing.T, ctx context.Context, want string, lines int) string {
	t.Helper()
	var text string
	var n int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		text, n = tipState(t, ctx)
		if n == lines && ((want == "" && text == "") || (want != "" && strings.Contains(text, want))) {
			return text
		}
	}
	t.Fatalf("tip %q with %d crosshair lines, want %q and %d", text, n, want, lines)
	return ""
}

// TestHistoryChartsInARealBrowser: traffic with some 500s, two deploys, a
// crash, a stop and a start show on slot a's page as four charts with
// gridlines, y labels and clock-time x labels, and an events lane with a
// shape per kind (each deploy's linking to its page); one crosshair tip
// shows every series of a moment on hover and on tap, and survives the
// refresh; a young agent's 24 h view spans what it has; an empty slot has
// an empty state; the dashboard shows requests per minute and the error
// rates; both pages fit a 390 px phone.
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
	if code := agent.api(t, "POST", "/api/processes/a/stop", "{}", nil); code != 200 {
		t.Fatalf("stop: %d", code)
	}
	if code := agent.api(t, "POST", "/api/restart/a", "{}", nil); code != 200 {
		t.Fatalf("start: %d", code)
	}
	testkit.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/health", agent.ports["a"]), 200, 10*time.Second)
	agent.hits(t, "/", 10, 200)
	demo(30 * time.Second)
	agent.api(t, "GET", "/api/slots/a/history?range=1h", "", &h)
	if sum(h.Status5xx) != 10 || sum(h.Requests) < 61 || len(h.Events) != 5 || h.Events[0].DeployID != first ||
		h.Events[1].DeployID != second || h.Events[2].Kind != "crash" || h.Events[3].Kind != "stop" || h.Events[4].Kind != "start" {
		t.Fatalf("history of slot a: %d 5xx, %d requests, events %+v", sum(h.Status5xx), sum(h.Requests), h.Events)
	}

	// The slot page: four charts with their y labels, clock times in the
	// zone the caption names, the lane's five events; the 500s in a
	// column's numbers.
	if err := chromedp.Run(ctx, chromedp.EmulateViewport(1400, 1000), chromedp.Navigate(admin+"slots/a"),
		chromedp.WaitVisible("#history svg.chart", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	var got chartProbe
	if err := chromedp.Run(ctx, chromedp.Evaluate(chartProbeJS, &got)); err != nil {
		t.Fatal(err)
	}
	zone, _ := time.Now().Zone()
	if got.Charts != 4 || got.YLabels < 3 || got.Marks != 5 || got.ErrPaths != 1 || got.FailCount < 1 || got.CaptionsCut != 0 ||
		!strings.Contains(got.Caption, "times in "+zone) || len(got.XLabels) < 2 {
		t.Fatalf("slot page charts: %+v", got)
	}
	for _, l := range got.XLabels {
		if _, err := time.Parse("15:04", l); err != nil {
			t.Errorf("x label %q is not a clock time", l)
		}
	}
	if got.Tops[0] != got.Tops[1] || got.Tops[2] != got.Tops[3] || got.Tops[2] <= got.Tops[0] {
		t.Errorf("the charts are not two rows of two at 1400 px: tops %v", got.Tops)
	}
	if want := []string{"deploy", "deploy", "crash", "stop", "start"}; strings.Join(got.Kinds, " ") != strings.Join(want, " ") {
		t.Errorf("lane: %v, want %v", got.Kinds, want)
	}
	if len(got.Hrefs) != 3 || got.Hrefs[0] != "../deploys/"+first || got.Hrefs[1] != "../deploys/"+second || got.Hrefs[2] != "#app-log" {
		t.Errorf("lane links: %v", got.Hrefs)
	}

	// Hover: one line across each chart, one tip with every series of
	// that moment; it stays through the refresh; leaving hides it.
	if err := chromedp.Run(ctx, chromedp.ScrollIntoView("#history", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	x, y := pointAt(t, ctx, got.Fail)
	if err := chromedp.Run(ctx, chromedp.MouseEvent(input.MouseMoved, x, y)); err != nil {
		t.Fatal(err)
	}
	tip := waitTip(t, ctx, fmt.Sprintf("%d 5xx", got.FailCount), 4)
	for _, want := range []string{"requests in", "/min", "latency p50", "CPU", "memory", zone} {
		if !strings.Contains(tip, want) {
			t.Errorf("the tip has no %q: %q", want, tip)
		}
	}
	var refreshes int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.__refreshes = 0; document.getElementById('history').addEventListener('refreshed', () => window.__refreshes++); 0`, &refreshes)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); refreshes < 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the charts did not refresh")
		}
		_ = chromedp.Run(ctx, chromedp.Evaluate(`window.__refreshes`, &refreshes))
	}
	// The same moment (its numbers may have grown: it can be the bucket
	// under way).
	moment := tip[:strings.Index(tip, zone)+len(zone)]
	if after, lines := tipState(t, ctx); !strings.HasPrefix(after, moment) || lines != 4 {
		t.Fatalf("after the refresh the tip is %q with %d lines, was %q", after, lines, tip)
	}
	shot(t, ctx, "viewport", "screenshot-charts-slot.png") // as it is: the tip shown
	if err := chromedp.Run(ctx, chromedp.MouseEvent(input.MouseMoved, 5, 5)); err != nil {
		t.Fatal(err)
	}
	waitTip(t, ctx, "", 0)

	// Tap: the tip stays after the finger lifts; a tap elsewhere hides it.
	tap := func(x, y float64) {
		t.Helper()
		pt := []*input.TouchPoint{{X: x, Y: y}}
		if err := chromedp.Run(ctx, input.DispatchTouchEvent(input.TouchStart, pt), input.DispatchTouchEvent(input.TouchEnd, []*input.TouchPoint{})); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Run(ctx, emulation.SetTouchEmulationEnabled(true)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Run(ctx, chromedp.Evaluate(chartProbeJS, &got)); err != nil { // the columns may have moved on
		t.Fatal(err)
	}
	x, y = pointAt(t, ctx, got.Fail)
	tap(x, y)
	waitTip(t, ctx, fmt.Sprintf("%d 5xx", got.FailCount), 4)
	tap(5, 5)
	waitTip(t, ctx, "", 0)
	if err := chromedp.Run(ctx, emulation.SetTouchEmulationEnabled(false)); err != nil {
		t.Fatal(err)
	}

	// 24 h: a young history spans what it has (at least 30 one-minute
	// columns, not hours of 8-minute ones), with the same events; a bad
	// range is an error page.
	if err := chromedp.Run(ctx, chromedp.Click(`a[href="?range=24h"]`, chromedp.ByQuery), chromedp.WaitVisible("#history svg.chart", chromedp.ByQuery),
		chromedp.Evaluate(chartProbeJS, &got)); err != nil {
		t.Fatal(err)
	}
	if got.Columns != 30 || got.Marks != 5 || !strings.Contains(got.Caption, "when this history began") {
		t.Fatalf("24 h view of a young history: %+v", got)
	}
	if text := pageText(t, ctx, admin+"slots/a?range=7d"); !strings.Contains(text, "1h or 24h") || !strings.Contains(text, "Back to the panel") {
		t.Fatalf("?range=7d: %q", text)
	}

	// An empty slot: a real empty state, no charts.
	var empty struct {
		Text   string
		Charts int
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(admin+"slots/b"), chromedp.WaitVisible("#history .empty-state", chromedp.ByQuery),
		chromedp.Evaluate(`({Text: document.querySelector('#history .empty-state').textContent, Charts: document.querySelectorAll('svg.chart').length})`, &empty)); err != nil {
		t.Fatal(err)
	}
	if empty.Charts != 0 || !strings.Contains(empty.Text, "slotagent deploy b --repo URL") {
		t.Fatalf("empty slot b: %+v", empty)
	}

	// The dashboard: slot a's requests per minute and its error rates, in
	// red for 5xx; empty slots say how to deploy.
	var dash struct {
		Sparks       int
		Rates, Empty string
		Bad          bool
		EmptyCells   int
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(admin), chromedp.WaitVisible("svg.spark", chromedp.ByQuery),
		chromedp.Evaluate(`(() => { const row = document.querySelector('a[href="./slots/a"]').closest('tr');
		  return {Sparks: row.querySelectorAll('svg.spark').length, Rates: row.querySelector('td.rates').textContent,
		    Bad: !!row.querySelector('.r5.bad'), Empty: document.querySelector('td.empty-slot').textContent,
		    EmptyCells: document.querySelectorAll('td.empty-slot').length}; })()`, &dash)); err != nil {
		t.Fatal(err)
	}
	if dash.Sparks != 1 || !strings.Contains(dash.Rates, "/min") || !strings.Contains(dash.Rates, "5xx") || !strings.Contains(dash.Rates, "4xx") ||
		!dash.Bad || dash.EmptyCells != 4 || !strings.Contains(dash.Empty, "deploy one") {
		t.Fatalf("dashboard: %+v", dash)
	}
	shot(t, ctx, "", "screenshot-charts-dashboard.png")

	// A 1280 px laptop and a 390 px phone: nothing wider than the screen,
	// nor than its card (a card scrolls sideways rather than widen the
	// page); each figure of the rates on one line ("1345/min", not
	// "1345/m" over "in": an inline box that wraps has a client rectangle
	// per line); the captions whole.
	for _, screen := range []int{1280, 390} {
		for _, page := range []string{admin, admin + "slots/a"} {
			var width, inner int
			var over struct {
				Px   int
				Card string
			}
			if err := chromedp.Run(ctx, chromedp.EmulateViewport(int64(screen), 844), chromedp.Navigate(page), chromedp.WaitVisible("svg", chromedp.ByQuery),
				chromedp.Evaluate(`document.documentElement.scrollWidth`, &width), chromedp.Evaluate(`window.innerWidth`, &inner),
				chromedp.Evaluate(`[...document.querySelectorAll('.card')].map(c => ({Px: c.scrollWidth - c.clientWidth,
				  Card: (c.querySelector('h2') || c).textContent.slice(0, 40)})).sort((a, b) => b.Px - a.Px)[0]`, &over)); err != nil {
				t.Fatal(err)
			}
			if width > inner || over.Px > 0 {
				t.Errorf("%s is %d px wide on a %d px screen; card %q's content is %d px wider than the card", page, width, inner, over.Card, over.Px)
			}
			if page != admin {
				continue
			}
			var wrapped []string
			if err := chromedp.Run(ctx, chromedp.Evaluate(`[...document.querySelectorAll('td.rates span')].filter(s => !s.classList.contains('figures'))
			  .filter(s => s.getClientRects().length !== 1).map(s => s.textContent)`, &wrapped)); err != nil {
				t.Fatal(err)
			}
			if len(wrapped) > 0 {
				t.Errorf("at %d px these rates wrap: %q", screen, wrapped)
			}
			if screen == 390 {
				shot(t, ctx, "", "screenshot-dashboard-phone.png")
			}
		}
	}
	if err := chromedp.Run(ctx, chromedp.Evaluate(chartProbeJS, &got)); err != nil || got.CaptionsCut != 0 {
		t.Errorf("at 390 px: %d captions cut (%v)", got.CaptionsCut, err)
	}
	shot(t, ctx, "#history", "screenshot-charts-phone.png")
}

// shot saves a screenshot of the element sel (the whole page when empty,
// the screen as it is for "viewport") into docs/ when UPDATE_SCREENSHOTS
// is set.
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
	shoot := chromedp.Screenshot(sel, &png, chromedp.ByQuery)
	if sel == "viewport" { // what is on the screen, without scrolling (which moves the pointer)
		shoot = chromedp.CaptureScreenshot(&png)
	}
	if err := chromedp.Run(ctx, shoot); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot of %s is not a PNG", sel)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
