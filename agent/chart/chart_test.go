package chart

import (
	"encoding/xml"
	"math"
	"slices"
	"strings"
	"testing"
)

// TestLinearTicks: 3 to 5 steps of 1, 2, 2.5 or 5 times a power of ten,
// the top the first tick at or above the largest value (a peak of 101 is
// drawn on 0–125, not 0–200).
func TestLinearTicks(t *testing.T) {
	for top, want := range map[float64][]float64{
		101: {0, 25, 50, 75, 100, 125}, 7: {0, 2, 4, 6, 8}, 180: {0, 50, 100, 150, 200}, 1: {0, 0.2, 0.4, 0.6, 0.8, 1},
		0: {0, 0.2, 0.4, 0.6, 0.8, 1}, 40: {0, 10, 20, 30, 40}, 0.8: {0, 0.2, 0.4, 0.6, 0.8}, 12000: {0, 2500, 5000, 7500, 10000, 12500},
	} {
		s := Linear(top)
		if !slices.Equal(s.Ticks, want) || s.Hi != s.Ticks[len(s.Ticks)-1] || s.Lo != 0 {
			t.Errorf("Linear(%v): %+v, want ticks %v", top, s, want)
		}
	}
	if s := Linear(math.NaN()); s.Hi != 1 {
		t.Errorf("Linear(NaN) = %+v", s)
	}
}

// TestLogarithmic: whole decades around the values, 2 and 5 between them
// when there are few; a p50 of 0.8 ms on a scale whose top is 300 ms is a
// third of the way up, not on the bottom border.
func TestLogarithmic(t *testing.T) {
	s := Logarithmic(0.8, 300)
	if s.Lo != 0.1 || s.Hi != 1000 || !slices.Equal(s.Ticks, []float64{0.1, 1, 10, 100, 1000}) {
		t.Fatalf("Logarithmic(0.8, 300) = %+v", s)
	}
	if p := s.Pos(0.8); p < 0.2 || p > 0.3 {
		t.Errorf("0.8 ms is at %.2f of the scale", p)
	}
	if s.Pos(0) != 0 || s.Pos(5000) != 1 || s.Pos(math.NaN()) != 0 {
		t.Errorf("out of range: %v %v %v", s.Pos(0), s.Pos(5000), s.Pos(math.NaN()))
	}
	if s := Logarithmic(2, 5); s.Lo != 1 || s.Hi != 10 || !slices.Equal(s.Ticks, []float64{1, 2, 5, 10}) {
		t.Errorf("Logarithmic(2, 5) = %+v", s)
	}
	if s := Logarithmic(10, 10); s.Lo != 10 || s.Hi != 100 {
		t.Errorf("Logarithmic(10, 10) = %+v", s)
	}
}

// TestSVGIsWellFormedAndEscaped: the chart parses as XML, names itself,
// keeps hostile text as text, draws gridlines at the ticks, stacked bars to
// scale and lines broken at gaps.
func TestSVGIsWellFormedAndEscaped(t *testing.T) {
	nan := math.NaN()
	c := Chart{
		Title: `requests <script>alert(1)</script> & "more"`, Class: "chart", Columns: 6,
		Bars:  []Series{{Class: "ok", Values: []float64{1, 2, 0, nan}}, {Class: "err", Values: []float64{1, 0, 0, 3}}},
		Lines: []Series{{Class: "p50", Values: []float64{nan, 1, 2, nan}}, {Class: "lone", Values: []float64{nan, nan, nan, 4}}},
	}
	if top := c.Largest(); top != 4 {
		t.Fatalf("Largest() = %v, want 4 (a line's 4 over the tallest stack, 3)", top)
	}
	svg := string(c.SVG())
	if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil {
		t.Fatalf("not well-formed: %v\n%s", err, svg)
	}
	for _, want := range []string{
		`viewBox="0 0 6 100"`, `<title>requests &lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;more&#34;</title>`,
		// scale 0–4 in steps of 1: five gridlines
		`<path class="grid" d="M0 100H6M0 75H6M0 50H6M0 25H6M0 0H6"`,
		// the first data column is column 2 of 6: a bar of 1 from 100 to 75
		`<path class="ok" d="M2.1 100V75h0.8V100ZM3.1 100V50h0.8V100Z"`,
		// the error bar of column 2 sits on the ok bar
		`d="M2.1 75V50h0.8V75ZM5.1 100V25h0.8V100Z"`,
		`<path class="p50" d="M3.5 75L4.5 50"`, `<path class="lone" d="M5.5 0h0.01"`,
	} {
		if !strings.Contains(svg, want) {
			t.Errorf("no %s in\n%s", want, svg)
		}
	}
	if strings.Contains(svg, "<script") {
		t.Errorf("unescaped text:\n%s", svg)
	}
}

func TestEmptyChart(t *testing.T) {
	svg := string(Chart{Title: "nothing yet", Columns: 60}.SVG())
	if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil || !strings.Contains(svg, "<title>nothing yet</title>") ||
		strings.Count(svg, "<path") != 1 || !strings.Contains(svg, `class="grid"`) {
		t.Fatalf("%v: %s", err, svg)
	}
}

// TestLongDataKeepsTheNewest: data longer than the chart loses its oldest
// columns.
func TestLongDataKeepsTheNewest(t *testing.T) {
	c := Chart{Title: "t", Columns: 2, Lines: []Series{{Class: "l", Values: []float64{9, 1, 2}}}}
	svg := string(c.SVG())
	if c.Largest() != 2 || !strings.Contains(svg, `d="M0.5 50L1.5 0"`) {
		t.Fatalf("largest %v: %s", c.Largest(), svg)
	}
}

// TestBarsToScaleWithAFloor: 1 and 5 errors under 1000 successes are drawn
// to scale, the one at least Floor tall (a pixel), not alike; the
// successes stack on them.
func TestBarsToScaleWithAFloor(t *testing.T) {
	c := Chart{Title: "t", Columns: 2, Scale: Linear(1000),
		Bars: []Series{{Class: "err", Values: []float64{1, 50}, Floor: 0.7}, {Class: "ok", Values: []float64{999, 950}}}}
	svg := string(c.SVG())
	if !strings.Contains(svg, `<path class="err" d="M0.1 100V99.3h0.8V100ZM1.1 100V95h0.8V100Z"`) ||
		!strings.Contains(svg, `<path class="ok" d="M0.1 99.3V0h0.8V99.3ZM1.1 95V0h0.8V95Z"`) {
		t.Fatalf("%s", svg)
	}
}

// TestLaneAndAxes: every kind of event has its own shape and class, a
// link is escaped, an event off the lane is left out; the axes place
// their labels in percent and escape them.
func TestLaneAndAxes(t *testing.T) {
	lane := string(Lane(10, []Mark{
		{At: 2.5, Kind: "deploy", Title: "deploy <1>", Href: `../deploys/x"y`}, {At: 5, Kind: "rollback"}, {At: 6, Kind: "crash"},
		{At: 7, Kind: "stop"}, {At: 8, Kind: "start"}, {At: 9, Kind: "restart"}, {At: 11, Kind: "stop", Title: "off the lane"},
	}))
	if err := xml.Unmarshal([]byte(lane), new(struct{})); err != nil {
		t.Fatalf("lane not well-formed: %v\n%s", err, lane)
	}
	for _, want := range []string{`<a class="mark ev-deploy" href="../deploys/x&#34;y"><svg x="25%"`, `<title>deploy &lt;1&gt;</title>`,
		`<g class="mark ev-rollback"><svg x="50%"`, `class="x"`, `<rect x="-5"`, `M-4.5-6L6 0-4.5 6Z`, `class="ring"`, `<circle class="hit" r="12"/>`} {
		if !strings.Contains(lane, want) {
			t.Errorf("no %s in\n%s", want, lane)
		}
	}
	if strings.Contains(lane, "off the lane") {
		t.Errorf("an event off the lane is drawn:\n%s", lane)
	}
	y, x := string(YAxis([]Tick{{At: 25, Label: "<b>"}})), string(XAxis([]Tick{{At: 40, Label: "12:00"}}))
	if !strings.Contains(y, `y="75%"`) || !strings.Contains(y, "&lt;b&gt;") || !strings.Contains(x, `x="40%"`) {
		t.Fatalf("axes: %s %s", y, x)
	}
}
