package bench

import (
	"context"
	"math"
	"strings"
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
