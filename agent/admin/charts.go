package admin

import (
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"strconv"
	"time"

	"github.com/coder-slots/coder-slots/agent/chart"
	"github.com/coder-slots/coder-slots/agent/history"
	"github.com/coder-slots/coder-slots/agent/humanize"
)

// A slot page's charts have at most chartColumns columns: 10 or 20 s each
// over the hour, 1 to 8 min over the day, the finest that fits. A history
// younger than the range is shown over at least minColumns, not squeezed
// to the right-hand edge nor spread over hours it does not have.
const (
	chartColumns = 180
	minColumns   = 30
	// plotHeightPx is the height of a chart in CSS pixels (svg.chart in
	// style.css), sparkHeightPx a sparkline's: a bar of errors is at
	// least one pixel tall.
	plotHeightPx  = 150
	sparkHeightPx = 40
	// sparkColumns is the dashboard's sparklines: one column a minute.
	// A history younger than the hour is drawn over the minutes it has,
	// at least sparkMinColumns, not in the right-hand edge of an hour.
	sparkColumns    = 60
	sparkMinColumns = 10
)

// Spark is a slot's cell on the dashboard: requests per minute over the
// last hour, and the last 5 minutes' rate and error rates.
type Spark struct {
	Requests template.HTML
	// Span says what Requests covers: "last hour", or "since 15:04" for
	// a younger history (local time).
	Span string
	// None, instead of an empty chart, says that there were no requests.
	None string
	// PerMinute is the requests per minute of the last 5 minutes.
	PerMinute string
	// Rate5xx counts the app's 5xx and the slot's own 503s, Rate4xx the
	// 4xx, over the requests of the last 5 minutes ("" when there were none).
	Rate5xx, Rate4xx string
	// Bad is whether there were 5xx.
	Bad bool
}

// spark draws the dashboard's chart of a slot from its last hour in
// one-minute buckets.
func spark(s history.Series) *Spark {
	n := len(s.Times)
	span, none, columns := "last hour", "no requests in the last hour", sparkColumns
	if s.Since.After(s.From) {
		since := "since " + s.Since.Local().Format("15:04")
		span, none, columns = since, "no requests "+since, min(sparkColumns, max(n, sparkMinColumns))
	}
	ok, c4, bad := make([]float64, n), make([]float64, n), make([]float64, n)
	var recent, recent4, recent5 float64
	for i := range n {
		errs := float64(s.Status5xx[i] + s.Unavailable[i])
		ok[i], c4[i], bad[i] = float64(s.Requests[i])-errs-float64(s.Status4xx[i]), float64(s.Status4xx[i]), errs
		if i >= n-5 {
			recent += float64(s.Requests[i])
			recent4 += float64(s.Status4xx[i])
			recent5 += errs
		}
	}
	sp := &Spark{Span: span, PerMinute: rate(recent / float64(max(1, min(5, n))))}
	if recent > 0 {
		sp.Rate5xx, sp.Rate4xx, sp.Bad = percent(recent5/recent), percent(recent4/recent), recent5 > 0
	}
	floor := chart.Height / float64(sparkHeightPx)
	c := chart.Chart{Title: "requests per minute, " + span, Class: "spark", Columns: columns,
		Bars: []chart.Series{{Class: "err", Values: bad, Floor: floor}, {Class: "c4", Values: c4, Floor: floor}, {Class: "ok", Values: ok}}}
	if c.Largest() == 0 {
		sp.None = none
		return sp
	}
	c.Scale = chart.Linear(c.Largest())
	c.Scale.Ticks = nil // too small for gridlines
	sp.Requests = c.SVG()
	return sp
}

// Charts are a slot page's charts over one range.
type Charts struct {
	Range history.Range
	// Since is when the history began.
	Since time.Time
	// Span says what the charts cover; Zone is the time zone of their times.
	Span, Zone string
	// Empty is a range with nothing measured and no event.
	Empty  bool
	Charts []ChartBox
	// Lane is the events, XAxis the time labels, both as wide as a chart.
	Lane, XAxis template.HTML
	// Tips are the numbers of every column, for the crosshair (JSON).
	Tips string
}

// ChartBox is one chart with its caption, legend and y axis.
type ChartBox struct {
	Caption    string
	SVG, YAxis template.HTML
	Legend     []Legend
}

// Legend is one entry of a chart's legend: a CSS class and its meaning.
type Legend struct{ Class, Text string }

// tips is what the crosshair shows: the chart's geometry and, per data
// column, its time and lines of numbers.
type tips struct {
	Columns int      `json:"columns"`
	Off     int      `json:"off"`
	Rows    []tipRow `json:"rows"`
}

type tipRow struct {
	Time  string   `json:"t"`
	Lines []string `json:"l"`
}

// columnsFor is how many history buckets make a column (per) for n
// buckets, and how many columns the charts have.
func columnsFor(n int) (per, columns int) {
	per = max(1, (n+chartColumns-1)/chartColumns)
	return per, min(chartColumns, max((n+per-1)/per+1, minColumns))
}

// slotCharts draws a slot's charts over r: requests by status (per
// minute), latency p50/p95 on a log scale, CPU and memory, with the
// slot's events on a lane above each.
func slotCharts(h *history.Slot, r history.Range, root string) Charts {
	per, columns := columnsFor(len(h.Read(r).Times))
	s := h.ReadMerged(r, per)
	n := len(s.Times)
	skip := max(0, n-columns)
	off := columns - (n - skip)
	col := time.Duration(s.StepSeconds) * time.Second
	perMinute := float64(time.Minute) / float64(col)
	loc := time.Local
	zone, _ := time.Now().In(loc).Zone()
	out := Charts{Range: r, Since: s.Since, Zone: zone, Empty: len(s.Events) == 0}
	if s.Since.After(s.From) {
		out.Span = "since " + s.Since.In(loc).Format("Jan 2 15:04") + ", when this history began"
	} else if r == history.Day {
		out.Span = "the last 24 hours"
	} else {
		out.Span = "the last hour"
	}
	okV, c4, c5, unavail := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	latLo, latHi := math.Inf(1), 0.0
	t := tips{Columns: columns, Off: off}
	colText := humanize.Elapsed(col)
	for i := range n {
		okV[i] = float64(s.Status2xx[i]+s.Status3xx[i]) * perMinute
		c4[i], c5[i], unavail[i] = float64(s.Status4xx[i])*perMinute, float64(s.Status5xx[i])*perMinute, float64(s.Unavailable[i])*perMinute
		if s.Requests[i] > 0 || !math.IsNaN(s.CPUPercent[i]) {
			out.Empty = false
		}
		if p := s.P50Ms[i]; p > 0 {
			latLo, latHi = min(latLo, p), max(latHi, s.P95Ms[i])
		}
		if i < skip {
			continue
		}
		at := s.Times[i].In(loc)
		row := tipRow{Time: at.Format("15:04:05") + "–" + at.Add(col).Format("15:04:05") + " " + zone, Lines: []string{
			fmt.Sprintf("%d requests in %s (%s/min): %d 2xx/3xx · %d 4xx · %d 5xx · %d slot's 503",
				s.Requests[i], colText, rate(float64(s.Requests[i])*perMinute), s.Status2xx[i]+s.Status3xx[i], s.Status4xx[i], s.Status5xx[i], s.Unavailable[i]),
			"latency p50 " + millis(s.P50Ms[i]) + " · p95 " + millis(s.P95Ms[i]) + " · p99 " + millis(s.P99Ms[i]),
			"CPU " + cpuText(s.CPUPercent[i]) + " · memory " + memory(s.MemoryBytes[i]),
		}}
		for _, e := range s.Events {
			if !e.At.Before(s.Times[i]) && e.At.Before(s.Times[i].Add(col)) {
				row.Lines = append(row.Lines, eventText(e, loc))
			}
		}
		t.Rows = append(t.Rows, row)
	}
	tipsJSON, _ := json.Marshal(t)
	out.Tips = string(tipsJSON)

	floor := chart.Height / float64(plotHeightPx)
	// box draws c with the scale sc, or, when sc is nil, a linear one up
	// to what it shows.
	box := func(caption string, c chart.Chart, sc *chart.Scale, label func(float64) string, legend ...Legend) ChartBox {
		c.Class, c.Columns = "chart", columns
		c.Bars, c.Lines = trim(c.Bars, skip), trim(c.Lines, skip)
		if sc == nil {
			sc = &chart.Scale{}
			*sc = chart.Linear(c.Largest())
		}
		c.Scale = *sc
		var ticks []chart.Tick
		for _, v := range sc.Ticks {
			ticks = append(ticks, chart.Tick{At: 100 * sc.Pos(v), Label: label(v)})
		}
		return ChartBox{Caption: caption, SVG: c.SVG(), YAxis: chart.YAxis(ticks), Legend: legend}
	}
	reqChart := chart.Chart{Title: "Requests per minute by status, " + out.Span,
		Bars: []chart.Series{{Class: "err", Values: c5, Floor: floor}, {Class: "down", Values: unavail, Floor: floor},
			{Class: "c4", Values: c4, Floor: floor}, {Class: "ok", Values: okV}}}
	if math.IsInf(latLo, 1) {
		latLo, latHi = 1, 10
	}
	latency := chart.Logarithmic(latLo, latHi)
	mem := make([]float64, n)
	for i, b := range s.MemoryBytes {
		mem[i] = b / (1 << 20)
	}
	out.Charts = []ChartBox{
		box("Requests /min", reqChart, nil, tickNumber,
			Legend{"ok", "2xx/3xx"}, Legend{"c4", "4xx"}, Legend{"err", "5xx"}, Legend{"down", "503 app down"}),
		box("Latency (log scale)", chart.Chart{Title: "Latency p50 and p95 (time to the response header), " + out.Span,
			Lines: []chart.Series{{Class: "p95", Values: s.P95Ms}, {Class: "p50", Values: s.P50Ms}}},
			&latency, tickMillis, Legend{"p50", "p50"}, Legend{"p95", "p95"}),
		box("CPU", chart.Chart{Title: "CPU of the app's process tree, % of one core, " + out.Span,
			Lines: []chart.Series{{Class: "cpu", Values: s.CPUPercent}}}, nil,
			func(v float64) string { return tickNumber(v) + " %" }, Legend{"cpu", "% of one core"}),
		box("Memory", chart.Chart{Title: "Memory (RSS) of the app's process tree, " + out.Span,
			Lines: []chart.Series{{Class: "mem", Values: mem}}}, nil,
			func(v float64) string { return tickNumber(v) + " MiB" }, Legend{"mem", "RSS"}),
	}
	start := s.Times[skip]
	out.XAxis = chart.XAxis(timeTicks(start, col, off, columns, loc))
	out.Lane = chart.Lane(columns, eventMarks(s.Events, start, col, off, root, loc))
	return out
}

// trim drops the first skip values of every series.
func trim(series []chart.Series, skip int) []chart.Series {
	for i := range series {
		series[i].Values = series[i].Values[min(skip, len(series[i].Values)):]
	}
	return series
}

// tickSteps are the steps between the time labels.
var tickSteps = []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute,
	30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour}

// timeTicks are clock times at round steps (counted from local midnight)
// under columns of length col whose first data column starts at start
// and is column off; at most six, none at the very edges.
func timeTicks(start time.Time, col time.Duration, off, columns int, loc *time.Location) []chart.Tick {
	left := start.Add(-time.Duration(off) * col)
	span := time.Duration(columns) * col
	step := tickSteps[len(tickSteps)-1]
	for _, st := range tickSteps {
		if span/st <= 6 {
			step = st
			break
		}
	}
	l := left.In(loc)
	midnight := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, loc)
	var out []chart.Tick
	for t := midnight.Add((l.Sub(midnight)/step + 1) * step); t.Before(left.Add(span)); t = t.Add(step) {
		at := 100 * float64(t.Sub(left)) / float64(span)
		if at < 4 || at > 96 {
			continue
		}
		label := t.In(loc).Format("15:04")
		if label == "00:00" {
			label = t.In(loc).Format("Jan 2")
		}
		out = append(out, chart.Tick{At: at, Label: label})
	}
	return out
}

// eventMarks places the slot's events on the lane; deploys and rollbacks
// link to their page, crashes to the app log.
func eventMarks(events []history.Event, start time.Time, col time.Duration, off int, root string, loc *time.Location) []chart.Mark {
	var out []chart.Mark
	for _, e := range events {
		m := chart.Mark{At: float64(off) + float64(e.At.Sub(start))/float64(col), Kind: string(e.Kind), Title: eventText(e, loc)}
		switch {
		case e.DeployID != "":
			m.Title += ": open its page"
			m.Href = root + deployPage(e.DeployID)
		case e.Kind == history.Crash:
			m.Href = "#app-log"
		}
		out = append(out, m)
	}
	return out
}

// eventText says what an event was, and when.
func eventText(e history.Event, loc *time.Location) string {
	s := string(e.Kind) + " at " + e.At.In(loc).Format("15:04:05")
	if e.DeployID != "" {
		s += " · " + e.DeployID
	}
	if e.Detail != "" {
		s += " · " + e.Detail
	}
	return s
}

// tickNumber is a scale's number: 0.5, 25, 150, 2.5k.
func tickNumber(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// tickMillis is a latency scale's label: 0.5 ms, 20 ms, 1 s.
func tickMillis(v float64) string {
	if v >= 1000 {
		return tickNumber(v/1000) + " s"
	}
	return tickNumber(v) + " ms"
}

// rate is a number of requests per minute: 0, 0.4, 12, 1,250.
func rate(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
	default:
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	}
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
