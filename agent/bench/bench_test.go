package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
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
	r, err := Run(ctx, Options{Quick: true, Binary: "/nonexistent/slotagent", NoPM2: true})
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

// TestTwoStacks: a second stack gets its columns and the ratio of the
// medians; an AtLeast target is a lower bound; merge puts cells into the
// row of their figure or appends one.
func TestTwoStacks(t *testing.T) {
	r := &Report{Stacks: []string{Ours, PM2}, Machine: Machine{Date: time.Now(), PM2Version: "7.0.4"}}
	r.Rows = []Row{
		ours("memory", "MiB", Summarize([]float64{16}), &Target{On: P99, Max: 25}, "ours"),
		ours("share", "%", OnlyMedian(1, 40), &Target{On: Median, Max: 50, AtLeast: true}, ""),
		ours("fast enough", "%", OnlyMedian(1, 60), &Target{On: Median, Max: 50, AtLeast: true}, ""),
	}
	r.Rows = merge(r.Rows, PM2, []cell{
		{figure: "memory", unit: "MiB", stat: Summarize([]float64{320}), note: "7 processes"},
		{figure: "resurrect", unit: "ms", stat: Summarize([]float64{1500})},
	})
	md := r.Markdown()
	for _, want := range []string{
		"PM2 7.0.4",
		"| slotagent median | slotagent p99 | slotagent min – max | runs | PM2 median | PM2 p99 | PM2 min – max | runs | slotagent / PM2 (medians) | target |",
		"| 1 | memory | 16.0 MiB | 16.0 MiB | 16.0 – 16.0 MiB | 1 | 320 MiB | 320 MiB | 320 – 320 MiB | 1 | 0.05× | p99 ≤ 25.0 MiB | ✓ | ours; PM2: 7 processes |",
		"| 2 | share | 40.0 % | — | — | 1 | — | — | — | — | — | median ≥ 50.0 % | ✗ |",
		"| 3 | fast enough | 60.0 % |",
		"| median ≥ 50.0 % | ✓ |",
		"| 4 | resurrect | — | — | — | — | 1500 ms | 1500 ms | 1500 – 1500 ms | 1 | — | — |  |  |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in\n%s", want, md)
		}
	}
}

// TestServeSplice: the reference proxy prints its address and carries a
// request to its target and the answer back.
func TestServeSplice(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "via "+r.URL.Path)
	}))
	defer app.Close()
	pr, pw := io.Pipe()
	go func() { _ = ServeSplice(app.Listener.Addr().String(), pw) }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + strings.TrimSpace(line) + "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "via /x" {
		t.Fatalf("through the splice proxy: %q", b)
	}
}

// TestForgeCountsRefListings: the follow measurement's forge serves a
// bare repository to a real `git ls-remote` and counts its requests.
func TestForgeCountsRefListings(t *testing.T) {
	root := t.TempDir()
	if err := git(context.Background(), root, "init", "-q", "--bare", "app.git"); err != nil {
		t.Fatal(err)
	}
	f, err := startForge(root)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	for range 2 {
		if out, err := gitCmd(context.Background(), root, "ls-remote", f.url+"/app.git").CombinedOutput(); err != nil {
			t.Fatalf("ls-remote: %v\n%s", err, out)
		}
	}
	if f.listings.Load() != 2 || f.requests.Load() < 2 {
		t.Fatalf("two ls-remote: %d listings, %d requests", f.listings.Load(), f.requests.Load())
	}
}

// TestCPUSeconds: this process's CPU time grows as it works.
func TestCPUSeconds(t *testing.T) {
	before, err := cpuSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for x, start := 0, time.Now(); time.Since(start) < 300*time.Millisecond; x++ {
		_ = x * x
	}
	after, err := cpuSeconds(os.Getpid())
	if err != nil || after <= before {
		t.Fatalf("CPU seconds %v → %v after 300ms of work (%v)", before, after, err)
	}
	if _, err := cpuSeconds(1 << 30); err == nil {
		t.Error("no error for a process that does not exist")
	}
}

// TestUnknownMeasurement: -only with a name that is no measurement is an
// error naming the ones there are, before anything runs.
func TestUnknownMeasurement(t *testing.T) {
	_, err := Run(context.Background(), Options{Only: []string{"folow"}, Binary: "/nonexistent"})
	if err == nil || !strings.Contains(err.Error(), `unknown measurement "folow"`) || !strings.Contains(err.Error(), "follow") {
		t.Fatalf("Run with -only folow: %v", err)
	}
}
