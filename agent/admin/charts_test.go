package admin

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/chart"
	"github.com/coder-slots/coder-slots/agent/history"
)

// TestColumnsFor: the finest columns that fit 180, and a young history
// over 30 columns, not spread over the range.
func TestColumnsFor(t *testing.T) {
	for n, want := range map[int][2]int{1: {1, 30}, 3: {1, 30}, 100: {1, 101}, 180: {1, 180}, 181: {2, 92}, 360: {2, 180}, 1440: {8, 180}} {
		if per, cols := columnsFor(n); per != want[0] || cols != want[1] {
			t.Errorf("columnsFor(%d) = %d, %d; want %d, %d", n, per, cols, want[0], want[1])
		}
	}
}

// TestTimeTicks: clock times at round steps, at most six, none at the
// edges; midnight is the date.
func TestTimeTicks(t *testing.T) {
	label := func(ticks []chart.Tick) (out []string) {
		for _, tk := range ticks {
			out = append(out, tk.Label+"@"+strconv.FormatFloat(tk.At, 'f', 1, 64))
		}
		return out
	}
	start := time.Date(2026, 12, 6, 12, 3, 0, 0, time.UTC)
	got := label(timeTicks(start, 10*time.Second, 0, 180, time.UTC)) // 12:03–12:33
	want := []string{"12:05@6.7", "12:10@23.3", "12:15@40.0", "12:20@56.7", "12:25@73.3", "12:30@90.0"}
	if len(got) != len(want) {
		t.Fatalf("half an hour: %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("half an hour: %v, want %v", got, want)
		}
	}
	day := label(timeTicks(start, 8*time.Minute, 0, 180, time.UTC)) // 12:03 to 12:03 the next day
	if len(day) != 3 || day[0] != "18:00@24.8" || day[1] != "Dec 7@49.8" {
		t.Fatalf("a day: %v", day)
	}
	// a history whose data starts at column 20 of 30 one-minute columns
	if got := label(timeTicks(start, time.Minute, 20, 30, time.UTC)); len(got) != 6 || got[0] != "11:45@6.7" {
		t.Fatalf("with an offset: %v", got)
	}
}

// TestEmptyHistoryIsEmpty: a slot with nothing recorded has no charts to
// show; one request makes them.
func TestEmptyHistoryIsEmpty(t *testing.T) {
	h := history.New([]string{"a"}).Slot("a")
	if c := slotCharts(h, history.Hour, "../"); !c.Empty {
		t.Fatalf("a new history is not empty: %+v", c)
	}
	h.Request(200, time.Now(), time.Millisecond, false)
	if c := slotCharts(h, history.Hour, "../"); c.Empty || len(c.Charts) != 4 || c.Span != "since "+c.Since.Local().Format("Jan 2 15:04")+", when this history began" {
		t.Fatalf("after a request: empty %v, %d charts, span %q", c.Empty, len(c.Charts), c.Span)
	}
}

// TestPixelHeightsMatchTheStyleSheet: a bar's one-pixel floor is computed
// from the heights the style sheet gives the charts.
func TestPixelHeightsMatchTheStyleSheet(t *testing.T) {
	css, err := os.ReadFile(filepath.Join("web", "static", "style.css"))
	if err != nil {
		t.Fatal(err)
	}
	for sel, px := range map[string]int{"svg.chart": plotHeightPx, "svg.spark": sparkHeightPx} {
		m := regexp.MustCompile(regexp.QuoteMeta(sel) + `\{[^}]*\bheight:(\d+)px`).FindSubmatch(css)
		if m == nil || string(m[1]) != strconv.Itoa(px) {
			t.Errorf("%s's height in style.css: %q, the code says %d px", sel, m, px)
		}
	}
}

// TestSparkOfAYoungHistory: a history younger than the hour is drawn over
// the minutes it has (at least sparkMinColumns), not squeezed into the
// right-hand edge of an empty hour, and says since when; its rate is over
// the minutes it has; with no requests it says so instead of an empty box.
func TestSparkOfAYoungHistory(t *testing.T) {
	h := history.New([]string{"a"}).Slot("a")
	if sp := spark(h.ReadMerged(history.Hour, int(time.Minute/history.FineStep))); sp.Requests != "" || !strings.HasPrefix(sp.None, "no requests since ") {
		t.Errorf("spark of no requests: %q, %s", sp.None, sp.Requests)
	}
	for range 30 {
		h.Request(200, time.Now(), time.Millisecond, false)
	}
	sp := spark(h.ReadMerged(history.Hour, int(time.Minute/history.FineStep)))
	if !strings.Contains(string(sp.Requests), `viewBox="0 0 10 100"`) || !strings.HasPrefix(sp.Span, "since ") {
		t.Errorf("spark of a minute-old history: span %q, svg %s", sp.Span, sp.Requests)
	}
	if sp.PerMinute != "30" {
		t.Errorf("30 requests in a one-minute history: %s/min", sp.PerMinute)
	}
}
