// Package chart draws the admin panel's time charts as inline SVG: stacked
// bars and lines over a fixed number of columns on a linear or
// logarithmic scale with gridlines at its ticks, and an events lane of
// shapes. A chart's SVG stretches to its box (preserveAspectRatio none,
// strokes that do not scale), so it has no text of its own: the tick
// labels are Axis SVGs beside it, placed in percent, and the numbers of a
// column are the page's to show.
package chart

import (
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// Height is the chart's height in its own units (the width is Columns).
const Height = 100

// Scale maps values to heights: Pos is 0 at the bottom, 1 at the top.
type Scale struct {
	Lo, Hi float64
	Log    bool
	// Ticks are the values with a gridline (and a label), bottom first.
	Ticks []float64
}

// niceSteps are the tick steps of a linear scale, times a power of ten.
var niceSteps = []float64{1, 2, 2.5, 5, 10}

// Linear is a scale from 0 to a round number at or above top, with 3 to 5
// intervals of 1, 2, 2.5 or 5 times a power of ten; 0 or less (or NaN) is
// 0 to 1.
func Linear(top float64) Scale {
	if !(top > 0) {
		top = 1
	}
	p := math.Pow(10, math.Floor(math.Log10(top/4)))
	step := 10 * p
	for _, m := range niceSteps {
		if top/(m*p) <= 5+1e-9 {
			step = m * p
			break
		}
	}
	n := math.Ceil(top/step - 1e-9)
	s := Scale{Lo: 0, Hi: n * step}
	for i := 0.0; i <= n; i++ {
		// To ten digits: 0.6, not 0.6000000000000001.
		v, _ := strconv.ParseFloat(strconv.FormatFloat(i*step, 'g', 10, 64), 64)
		s.Ticks = append(s.Ticks, v)
	}
	return s
}

// Logarithmic is a scale from the power of ten at or below lo to the one
// at or above hi (at least a decade apart), with ticks at every power of
// ten, and at 2 and 5 times them when it spans one or two decades.
func Logarithmic(lo, hi float64) Scale {
	if !(lo > 0) || !(hi >= lo) {
		lo, hi = 1, 10
	}
	a, b := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if b <= a {
		b = a + 1
	}
	s := Scale{Lo: math.Pow(10, a), Hi: math.Pow(10, b), Log: true}
	for e := a; e <= b; e++ {
		p := math.Pow(10, e)
		s.Ticks = append(s.Ticks, p)
		if b-a <= 2 && e < b {
			s.Ticks = append(s.Ticks, 2*p, 5*p)
		}
	}
	return s
}

// Pos is where v is on the scale: 0 at the bottom, 1 at the top, clamped.
func (s Scale) Pos(v float64) float64 {
	var p float64
	if s.Log {
		if !(v > 0) {
			return 0
		}
		p = math.Log10(v/s.Lo) / math.Log10(s.Hi/s.Lo)
	} else {
		p = (v - s.Lo) / (s.Hi - s.Lo)
	}
	return min(max(p, 0), 1)
}

// Chart is one chart over time, oldest column on the left.
type Chart struct {
	// Title names the chart (its <title>, for screen readers).
	Title string
	// Class is the CSS class of the <svg>.
	Class string
	// Columns is the number of columns across; the data fills the
	// right-most ones (the newest column is the last); data beyond
	// Columns is left out from the oldest.
	Columns int
	// Bars are stacked, bottom first; Lines are drawn over them.
	Bars, Lines []Series
	// Scale maps the values; a zero Scale is Linear of the largest bar
	// stack or line value.
	Scale Scale
}

// Series is one row of values, one per data column; NaN is no value (a
// gap in a line).
type Series struct {
	Class  string
	Values []float64
	// Floor is the least height (of Height) a bar of this series with a
	// value above 0 is drawn: one pixel of the chart, so that one error
	// beside many successes shows, with every other bar to scale.
	Floor float64
}

// Largest is the largest bar stack or line value of the data shown.
func (c Chart) Largest() float64 {
	top := 0.0
	skip, n := c.span()
	for i := skip; i < skip+n; i++ {
		stack := 0.0
		for _, b := range c.Bars {
			if v := value(b.Values, i); v > 0 {
				stack += v
			}
		}
		top = max(top, stack)
		for _, l := range c.Lines {
			if v := value(l.Values, i); v > top {
				top = v
			}
		}
	}
	return top
}

// scale is the chart's scale.
func (c Chart) scale() Scale {
	if c.Scale.Hi > c.Scale.Lo {
		return c.Scale
	}
	return Linear(c.Largest())
}

// SVG draws the chart: gridlines at the scale's ticks, then the bars, then
// the lines.
func (c Chart) SVG() template.HTML {
	sc := c.scale()
	skip, n := c.span()
	off := c.Columns - n
	y := func(v float64) float64 { return Height - sc.Pos(v)*Height }
	var b strings.Builder
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 `)
	b.WriteString(num(float64(c.Columns)))
	b.WriteString(` 100" preserveAspectRatio="none" class="`)
	b.WriteString(html.EscapeString(c.Class))
	b.WriteString(`"><title>`)
	b.WriteString(html.EscapeString(c.Title))
	b.WriteString(`</title>`)
	var grid strings.Builder
	for _, t := range sc.Ticks {
		grid.WriteString("M0 " + num(y(t)) + "H" + num(float64(c.Columns)))
	}
	path(&b, "grid", grid.String())

	base := make([]float64, n)
	for _, s := range c.Bars {
		var d strings.Builder
		for i := range n {
			v := value(s.Values, skip+i)
			if !(v > 0) { // nothing, or NaN
				continue
			}
			// In the chart's units, from the bottom; a small value is
			// drawn at least Floor tall.
			h := max(sc.Pos(v)*Height, s.Floor)
			y0, y1 := Height-base[i], max(Height-base[i]-h, 0)
			base[i] += h
			d.WriteString("M" + num(float64(off+i)+0.1) + " " + num(y0) + "V" + num(y1) + "h0.8V" + num(y0) + "Z")
		}
		path(&b, s.Class, d.String())
	}
	for _, s := range c.Lines {
		var d strings.Builder
		pen := false
		for i := range n {
			v := value(s.Values, skip+i)
			if math.IsNaN(v) {
				pen = false
				continue
			}
			if pen {
				d.WriteString("L")
			} else {
				d.WriteString("M")
			}
			d.WriteString(num(float64(off+i)+0.5) + " " + num(y(v)))
			if !pen && (i+1 >= n || math.IsNaN(value(s.Values, skip+i+1))) {
				d.WriteString("h0.01") // a lone point: a dot
			}
			pen = true
		}
		path(&b, s.Class, d.String())
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text in it is escaped above
}

// Tick is a label at a place along an axis, in % of its length.
type Tick struct {
	At    float64
	Label string
}

// YAxis draws a chart's tick labels for a box as tall as the chart, right
// aligned (At is % from the bottom).
func YAxis(ticks []Tick) template.HTML {
	var b strings.Builder
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" class="yaxis" aria-hidden="true">`)
	for _, t := range ticks {
		b.WriteString(`<text x="100%" dx="-5" y="` + num(100-t.At) + `%" dy="0.35em">` + html.EscapeString(t.Label) + `</text>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// XAxis draws the time labels under a chart (At is % from the left).
func XAxis(ticks []Tick) template.HTML {
	var b strings.Builder
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" class="xaxis" aria-hidden="true">`)
	for _, t := range ticks {
		b.WriteString(`<text x="` + num(t.At) + `%" y="12">` + html.EscapeString(t.Label) + `</text>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// Mark is an event on a lane: At is its column position (0 the left
// edge, the lane's columns the right one), Kind its class and shape.
type Mark struct {
	At                float64
	Kind, Title, Href string
}

// shapes draws each kind of event around (0, 0), in pixels.
var shapes = map[string]string{
	"deploy":   `<circle r="5.5"/>`,
	"rollback": `<path d="M0-6.5L6.5 0 0 6.5-6.5 0Z"/>`,
	"crash":    `<path d="M-5-5L5 5M5-5L-5 5" class="x"/>`,
	"stop":     `<rect x="-5" y="-5" width="10" height="10"/>`,
	"start":    `<path d="M-4.5-6L6 0-4.5 6Z"/>`,
	"restart":  `<circle r="4.5" class="ring"/>`,
}

// Lane draws events as shapes along a strip as wide as the charts over
// columns; each has its title and, with Href, is a link, with a target
// 24 px wide.
func Lane(columns int, marks []Mark) template.HTML {
	var b strings.Builder
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" class="lane" role="img"><title>events</title>`)
	for _, m := range marks {
		if m.At < 0 || m.At > float64(columns) {
			continue
		}
		shape, ok := shapes[m.Kind]
		if !ok {
			shape = `<circle r="3"/>`
		}
		open, end := `<g class="mark ev-`+html.EscapeString(m.Kind)+`">`, `</g>`
		if m.Href != "" {
			open, end = `<a class="mark ev-`+html.EscapeString(m.Kind)+`" href="`+html.EscapeString(m.Href)+`">`, `</a>`
		}
		b.WriteString(open + `<svg x="` + num(100*m.At/float64(max(columns, 1))) + `%" y="50%" overflow="visible"><title>` +
			html.EscapeString(m.Title) + `</title><circle class="hit" r="12"/>` + shape + `</svg>` + end)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// span is the data's columns shown: the last n of the longest series
// (skip the ones before), n at most Columns.
func (c Chart) span() (skip, n int) {
	for _, s := range c.Bars {
		n = max(n, len(s.Values))
	}
	for _, s := range c.Lines {
		n = max(n, len(s.Values))
	}
	return n - min(n, c.Columns), min(n, c.Columns)
}

func path(b *strings.Builder, class, d string) {
	if d == "" {
		return
	}
	b.WriteString(`<path class="` + html.EscapeString(class) + `" d="` + d + `" vector-effect="non-scaling-stroke"/>`)
}

// value is v[i], NaN past its end.
func value(v []float64, i int) float64 {
	if i >= len(v) {
		return math.NaN()
	}
	return v[i]
}

// num is a short decimal for SVG.
func num(v float64) string { return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64) }
