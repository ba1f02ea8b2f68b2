package admin

import (
	"fmt"
	"html/template"
	"math"
	"time"

	"github.com/coder-slots/coder-slots/agent/chart"
	"github.com/coder-slots/coder-slots/agent/history"
	"github.com/coder-slots/coder-slots/agent/humanize"
)

// chartColumns is how many columns a slot page's chart has: 20 s each over
// the hour, 8 min each over the day. A history younger than the range
// (a fresh agent) is shown over at least minColumns, not squeezed to the
// right-hand edge.
const (
	chartColumns = 180
	minColumns   = 30
)

// sparkColumns is the dashboard's sparklines: one column a minute.
const sparkColumns = 60

// errorFloor is the least height (% of a chart's) of a column's errors:
// errors are drawn at the bottom, and a few beside many successes show.
const errorFloor = 4

// Spark is a slot's line on the dashboard: requests per minute and memory
// over the last hour, and the error rate of the last 5 minutes.
type Spark struct {
	Requests, Memory template.HTML
	ErrorRate        string
}

// spark draws the dashboard's charts of a slot.
func spark(s history.Series) *Spark {
	n := len(s.Times)
	ok, bad := make([]float64, n), make([]float64, n)
	reqHover, memHover := make([]string, n), make([]string, n)
	var recent, recentErr float64
	for i := range n {
		errs := float64(s.Status5xx[i] + s.Unavailable[i])
		ok[i], bad[i] = float64(s.Requests[i])-errs, errs
		at := s.Times[i].Local().Format("15:04")
		reqHover[i] = fmt.Sprintf("%s · %d requests, %.0f errors", at, s.Requests[i], errs)
		memHover[i] = at + " · memory " + memory(s.MemoryBytes[i])
		if i >= n-5 {
			recent += float64(s.Requests[i])
			recentErr += errs
		}
	}
	sp := &Spark{ErrorRate: "—"}
	if recent > 0 {
		sp.ErrorRate = percent(recentErr / recent)
	}
	sp.Requests = chart.Chart{Title: "requests per minute, last hour", Class: "spark", Columns: sparkColumns,
		Bars: []chart.Series{{Class: "err", Values: bad, Floor: 2 * errorFloor}, {Class: "ok", Values: ok}}, Hover: reqHover}.SVG()
	sp.Memory = chart.Chart{Title: "memory, last hour", Class: "spark", Columns: sparkColumns,
		Lines: []chart.Series{{Class: "mem", Values: s.MemoryBytes}}, Hover: memHover, Max: mibScale(s.MemoryBytes)}.SVG()
	return sp
}

// Charts are a slot page's charts over one range.
type Charts struct {
	Range history.Range
	// Other is the other range, offered as a link.
	Other history.Range
	// Since is when the history began (the agent's start).
	Since  time.Time
	Axis   []string
	Charts []ChartBox
}

// ChartBox is one chart with its caption and legend.
type ChartBox struct {
	Caption, Scale string
	SVG            template.HTML
	Legend         []Legend
}

// Legend is one entry of a chart's legend: a CSS class and its meaning.
type Legend struct{ Class, Text string }

// slotCharts draws a slot's charts over r: requests and errors stacked,
// p50/p95 latency, CPU and memory, each with the slot's events.
func slotCharts(h *history.Slot, r history.Range, root string) Charts {
	per, other, stamp := 2, history.Day, "15:04:05" // 20 s columns over the hour
	if r == history.Day {
		per, other, stamp = 8, history.Hour, "Jan 2 15:04"
	}
	s := h.ReadMerged(r, per)
	n := len(s.Times)
	col := time.Duration(s.StepSeconds) * time.Second
	columns := min(chartColumns, max(n, minColumns))
	span := time.Duration(columns) * col
	axis := []string{"−" + humanize.Duration(span), "−" + humanize.Duration(span/2), "now"}
	okV, c4, c5, unavail := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	reqHover, latHover, cpuHover, memHover := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i := range n {
		okV[i] = float64(s.Status2xx[i] + s.Status3xx[i])
		c4[i], c5[i], unavail[i] = float64(s.Status4xx[i]), float64(s.Status5xx[i]), float64(s.Unavailable[i])
		at := s.Times[i].Local().Format(stamp)
		reqHover[i] = fmt.Sprintf("%s · %d requests: %.0f 2xx/3xx, %.0f 4xx, %.0f 5xx, %.0f unavailable (the slot's 503)",
			at, s.Requests[i], okV[i], c4[i], c5[i], unavail[i])
		latHover[i] = fmt.Sprintf("%s · p50 %s, p95 %s, p99 %s", at, millis(s.P50Ms[i]), millis(s.P95Ms[i]), millis(s.P99Ms[i]))
		cpuHover[i] = at + " · CPU " + cpuText(s.CPUPercent[i])
		memHover[i] = at + " · memory " + memory(s.MemoryBytes[i])
	}
	markers := eventMarkers(s, columns-n, col, stamp, root)
	box := func(caption string, c chart.Chart, scale func(float64) string, legend ...Legend) ChartBox {
		c.Class, c.Columns, c.Markers = "chart", columns, markers
		return ChartBox{Caption: caption, Scale: "scale 0 – " + scale(c.Top()), SVG: c.SVG(), Legend: legend}
	}
	step := humanize.Duration(col)
	count := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	return Charts{Range: r, Other: other, Since: s.Since, Axis: axis, Charts: []ChartBox{
		box("Requests per "+step, chart.Chart{Title: "Requests per " + step + " by status, last " + string(r),
			Bars: []chart.Series{{Class: "err", Values: c5, Floor: errorFloor}, {Class: "down", Values: unavail, Floor: errorFloor},
				{Class: "c4", Values: c4, Floor: errorFloor}, {Class: "ok", Values: okV}},
			Hover: reqHover}, count,
			Legend{"err", "5xx"}, Legend{"down", "slot's 503 (app down)"}, Legend{"c4", "4xx"}, Legend{"ok", "2xx/3xx"}),
		box("Latency", chart.Chart{Title: "Latency p50 and p95 (time to the response header), last " + string(r),
			Lines: []chart.Series{{Class: "p95", Values: s.P95Ms}, {Class: "p50", Values: s.P50Ms}}, Hover: latHover},
			func(v float64) string { return millis(v) }, Legend{"p50", "p50"}, Legend{"p95", "p95"}),
		box("CPU", chart.Chart{Title: "CPU of the app's process tree, % of one core, last " + string(r),
			Lines: []chart.Series{{Class: "cpu", Values: s.CPUPercent}}, Hover: cpuHover}, cpuText),
		box("Memory", chart.Chart{Title: "Memory (RSS) of the app's process tree, last " + string(r),
			Lines: []chart.Series{{Class: "mem", Values: s.MemoryBytes}}, Hover: memHover, Max: mibScale(s.MemoryBytes)}, memory),
	}}
}

// eventMarkers places the slot's events on a chart whose data starts at
// column off, col long each; deploys and rollbacks link to their record,
// crashes to the app log.
func eventMarkers(s history.Series, off int, col time.Duration, stamp, root string) []chart.Marker {
	var out []chart.Marker
	for _, e := range s.Events {
		m := chart.Marker{At: float64(off) + float64(e.At.Sub(s.Times[0]))/float64(col), Class: "ev-" + string(e.Kind),
			Title: string(e.Kind) + " at " + e.At.Local().Format(stamp)}
		switch {
		case e.DeployID != "":
			m.Title += ": " + e.DeployID + " (" + e.Detail + "), open its page"
			m.Href = root + deployPage(e.DeployID)
		case e.Kind == history.Crash:
			m.Title += ": " + e.Detail
			m.Href = "#app-log"
		}
		out = append(out, m)
	}
	return out
}

// mibScale is the top of a memory chart: a round number of MiB.
func mibScale(v []float64) float64 {
	top := 0.0
	for _, b := range v {
		if b > top {
			top = b
		}
	}
	return chart.Nice(top/(1<<20)) * (1 << 20)
}

func memory(b float64) string {
	if math.IsNaN(b) {
		return "—"
	}
	return humanize.Bytes(uint64(b))
}

func millis(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v < 10:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.0f ms", v)
	}
}

func cpuText(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf("%.1f %%", v)
}

func percent(v float64) string { return fmt.Sprintf("%.1f %%", 100*v) }
