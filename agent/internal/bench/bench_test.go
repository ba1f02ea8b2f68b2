package bench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	s := Summarize([]float64{5, 1, 4, 2, 3, 100})
	if s.N != 6 || s.Median != 3.5 || s.Min != 1 || s.Max != 100 || s.P99 != 100 {
		t.Fatalf("%+v", s)
	}
	if s := Summarize(nil); s.N != 0 || !math.IsNaN(s.Median) {
		t.Fatalf("empty: %+v", s)
	}
	many := make([]float64, 200)
	for i := range many {
		many[i] = float64(i + 1)
	}
	if s := Summarize(many); s.P99 != 198 || s.Median != 100.5 {
		t.Fatalf("1..200: %+v", s)
	}
}

func TestMarkdownVerdicts(t *testing.T) {
	r := &Report{Command: "go run ./agent/cmd/slotbench", Stacks: []string{Ours}, Machine: Machine{Date: time.Now()}}
	r.Rows = []Row{
		ours("fast", "ms", Summarize([]float64{1, 2, 3}), &Target{On: P99, Max: 5}, "a | b"),
		ours("slow", "ms", OnlyMedian(3, 30), &Target{On: Median, Max: 20}, ""),
		ours("plain", "MiB", Summarize([]float64{12.5}), nil, ""),
		failed("broken", nil, context.DeadlineExceeded),
	}
	md := r.Markdown()
	for _, want := range []string{
		"| 1 | fast | 2.00 ms | 3.00 ms | 1.00 – 3.00 ms | 3 | p99 ≤ 5.00 ms | ✓ | a \\| b |",
		"| 2 | slow | 30.0 ms | — | — | 3 | median ≤ 20.0 ms | ✗ |",
		"| 3 | plain | 12.5 MiB |",
		"| 4 | broken | — | — | — | — | — | ✗ | failed: context deadline exceeded |",
		"`go run ./agent/cmd/slotbench`",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in\n%s", want, md)
		}
	}
	if !r.Failed() {
		t.Error("a row with an error must fail the report")
	}
}

// TestRunWithoutAgentReportsErrors: a binary that cannot start gives rows
// carrying errors, not a hang or a panic.
func TestRunWithoutAgentReportsErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{Quick: true, Binary: "/nonexistent/slotagent"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Failed() || len(r.Rows) == 0 {
		t.Fatalf("report: %+v", r)
	}
	for _, row := range r.Rows {
		if row.Err == nil {
			t.Errorf("row %q measured without an agent", row.Figure)
		}
	}
}

func TestCountsAndMaxTarget(t *testing.T) {
	r := &Report{Stacks: []string{Ours}, Machine: Machine{Date: time.Now()}}
	r.Rows = []Row{
		ours("none failed", Requests, Summarize([]float64{0, 0, 0}), &Target{On: Max, Max: 0}, ""),
		ours("one failed", Requests, Summarize([]float64{0, 1, 0}), &Target{On: Max, Max: 0}, ""),
		ours("sent", Requests, Summarize([]float64{1200, 1301}), nil, ""),
	}
	md := r.Markdown()
	for _, want := range []string{
		"| 1 | none failed | 0 requests | 0 requests | 0 – 0 requests | 3 | max ≤ 0 requests | ✓ |",
		"| 2 | one failed | 0 requests | 1 requests | 0 – 1 requests | 3 | max ≤ 0 requests | ✗ |",
		"| 3 | sent | 1250 requests | 1301 requests | 1200 – 1301 requests | 2 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in\n%s", want, md)
		}
	}
}

// TestLoadClient: the looping client counts what it sends, what fails
// (an error status) and what it got.
func TestLoadClient(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 3 {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "up")
	}))
	defer srv.Close()
	l := startLoad(srv.URL)
	deadline := time.Now().Add(10 * time.Second)
	for n.Load() < 20 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	st := l.stop()
	_ = l.stop()
	if st.sent < 20 || st.failed != 1 || st.bodies["up"] != st.sent-1 || !strings.HasPrefix(st.firstFailure, "503") || st.longestGap <= 0 {
		t.Fatalf("%+v", st)
	}
}
