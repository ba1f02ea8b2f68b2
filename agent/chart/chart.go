// Package chart draws the admin panel's time charts as inline SVG: stacked
// bars, lines and event markers over a fixed number of columns, with a
// <title> for the chart and one for every column (the numbers on hover, and
// for screen readers), and no script. The SVG stretches to its box
// (preserveAspectRatio none, strokes that do not scale), so it has no text
// of its own: labels belong to the page around it.
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

// Chart is one chart over time, oldest column on the left.
type Chart struct {
	// Title names the chart (its <title>).
	Title string
	// Class is the CSS class of the <svg>.
	Class string
	// Columns is the number of columns across; the data fills the
	// right-most ones (the newest column is the last); data beyond
	// Columns is left out from the oldest.
	Columns int
	// Bars are stacked, bottom first; Lines are drawn over them.
	Bars, Lines []Series
	// Max is the top of the scale; 0 takes the largest value shown.
	Max float64
	// Hover is one text per data column, shown on hover.
	Hover []string
	// Markers are vertical lines at events.
	Markers []Marker
}

// Series is one row of values, one per data column; NaN is no value (a
// gap in a line).
type Series struct {
	Class  string
	Values []float64
	// Floor is the least height (of Height) a bar of this series with a
	// value above 0 is drawn, so that a few errors beside many successes
	// still show; the hover text has the numbers.
	Floor float64
}

// Marker is a vertical line at column position At (0 is the left edge,
// Columns the right one), linking to Href when it is set.
type Marker struct {
	At                 float64
	Class, Title, Href string
}

// Top is the top of the chart's scale: Max, else the largest bar stack or
// line value, rounded up to a round number (1 when there is nothing).
func (c Chart) Top() float64 {
	if c.Max > 0 {
		return c.Max
	}
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
	return Nice(top)
}

// Nice rounds v up to 1, 2 or 5 times a power of ten (1 for 0 or less).
func Nice(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p*(1+1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// SVG draws the chart.
func (c Chart) SVG() template.HTML {
	top := c.Top()
	skip, n := c.span()
	off := c.Columns - n
	y := func(v float64) float64 { return Height - min(v, top)/top*Height }
	var b strings.Builder
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 `)
	b.WriteString(num(float64(c.Columns)))
	b.WriteString(` 100" preserveAspectRatio="none" class="`)
	b.WriteString(html.EscapeString(c.Class))
	b.WriteString(`"><title>`)
	b.WriteString(html.EscapeString(c.Title))
	b.WriteString(`</title>`)

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
			h := max(min(v, top)/top*Height, s.Floor)
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
	for i := 0; i < n && skip+i < len(c.Hover); i++ {
		b.WriteString(`<rect class="hit" x="` + num(float64(off+i)) + `" y="0" width="1" height="100"><title>`)
		b.WriteString(html.EscapeString(c.Hover[skip+i]))
		b.WriteString(`</title></rect>`)
	}
	for _, m := range c.Markers {
		if m.At < 0 || m.At > float64(c.Columns) {
			continue
		}
		open, end := `<g class="marker `+html.EscapeString(m.Class)+`">`, `</g>`
		if m.Href != "" {
			open, end = `<a class="marker `+html.EscapeString(m.Class)+`" href="`+html.EscapeString(m.Href)+`">`, `</a>`
		}
		x := num(m.At)
		b.WriteString(open + `<title>` + html.EscapeString(m.Title) + `</title>`)
		b.WriteString(`<rect class="hit" x="` + num(m.At-1) + `" y="0" width="2" height="100"/>`)
		b.WriteString(`<line x1="` + x + `" x2="` + x + `" y1="0" y2="100" vector-effect="non-scaling-stroke"/>` + end)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text in it is escaped above
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
