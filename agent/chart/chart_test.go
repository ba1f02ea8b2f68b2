package chart

import (
	"encoding/xml"
	"math"
	"strings"
	"testing"
)

func TestNice(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, -3: 1, 0.3: 0.5, 1: 1, 1.2: 2, 3: 5, 7: 10, 10: 10, 42: 50, 180: 200, 512 << 20: 1e9} {
		if got := Nice(in); got != want {
			t.Errorf("Nice(%v) = %v, want %v", in, got, want)
		}
	}
	if got := Nice(math.NaN()); got != 1 {
		t.Errorf("Nice(NaN) = %v", got)
	}
}

// TestSVGIsWellFormedAndEscaped: the chart parses as XML, names itself,
// has one hover title per data column, keeps hostile text as text, draws
// stacked bars up to the scale's top, breaks lines at gaps and links its
// markers.
func TestSVGIsWellFormedAndEscaped(t *testing.T) {
	nan := math.NaN()
	c := Chart{
		Title: `requests <script>alert(1)</script> & "more"`, Class: "chart", Columns: 6,
		Bars:    []Series{{Class: "ok", Values: []float64{1, 2, 0, nan}}, {Class: "err", Values: []float64{1, 0, 0, 3}}},
		Lines:   []Series{{Class: "p50", Values: []float64{nan, 1, 2, nan}}, {Class: "lone", Values: []float64{nan, nan, nan, 4}}},
		Hover:   []string{"a", "b <b>", "c", "d"},
		Markers: []Marker{{At: 3.5, Class: "deploy", Title: "deploy 1", Href: `../api/deploys/x"y`}, {At: 9, Class: "stop", Title: "off the chart"}},
	}
	if top := c.Top(); top != 5 {
		t.Fatalf("Top() = %v, want 5 (the tallest stack, 3 or a line's 4, rounded up)", top)
	}
	svg := string(c.SVG())
	if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil {
		t.Fatalf("not well-formed: %v\n%s", err, svg)
	}
	for _, want := range []string{
		`viewBox="0 0 6 100"`, `<title>requests &lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;more&#34;</title>`,
		`<title>b &lt;b&gt;</title>`, `href="../api/deploys/x&#34;y"`, `class="marker deploy"`,
		// the first data column is column 2 of 6: a bar of 1 from 100 to 80
		`<path class="ok" d="M2.1 100V80h0.8V100ZM3.1 100V60h0.8V100Z"`,
		// the error bar of column 2 sits on the ok bar
		`d="M2.1 80V60h0.8V80ZM5.1 100V40h0.8V100Z"`,
		`<path class="p50" d="M3.5 80L4.5 60"`, `<path class="lone" d="M5.5 20h0.01"`,
	} {
		if !strings.Contains(svg, want) {
			t.Errorf("no %s in\n%s", want, svg)
		}
	}
	if strings.Contains(svg, "<script") || strings.Contains(svg, "off the chart") || strings.Count(svg, `class="hit"`) != 5 {
		t.Errorf("unescaped text, a marker off the chart, or not 4 column titles + 1 marker:\n%s", svg)
	}
}

func TestEmptyChart(t *testing.T) {
	svg := string(Chart{Title: "nothing yet", Columns: 60}.SVG())
	if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil || !strings.Contains(svg, "<title>nothing yet</title>") || strings.Contains(svg, "<path") {
		t.Fatalf("%v: %s", err, svg)
	}
}

// TestLongDataKeepsTheNewest: data longer than the chart loses its oldest
// columns, with their hover titles.
func TestLongDataKeepsTheNewest(t *testing.T) {
	c := Chart{Title: "t", Columns: 2, Lines: []Series{{Class: "l", Values: []float64{9, 1, 2}}}, Hover: []string{"old", "mid", "new"}}
	svg := string(c.SVG())
	if c.Top() != 2 || !strings.Contains(svg, `d="M0.5 50L1.5 0"`) || strings.Contains(svg, "old") || !strings.Contains(svg, "<title>new</title>") {
		t.Fatalf("top %v: %s", c.Top(), svg)
	}
}

// TestFloorKeepsSmallBarsVisible: 1 error under 1000 successes is drawn
// Floor tall, and the successes stack on it.
func TestFloorKeepsSmallBarsVisible(t *testing.T) {
	c := Chart{Title: "t", Columns: 1, Max: 1000,
		Bars: []Series{{Class: "err", Values: []float64{1}, Floor: 3}, {Class: "ok", Values: []float64{999}}}}
	svg := string(c.SVG())
	if !strings.Contains(svg, `<path class="err" d="M0.1 100V97h0.8V100Z"`) || !strings.Contains(svg, `<path class="ok" d="M0.1 97V0h0.8V97Z"`) {
		t.Fatalf("%s", svg)
	}
}
