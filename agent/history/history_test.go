package history

import (
	"encoding/json"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// fakeClock is a Clock whose monotonic and wall readings the test sets
// apart, as a machine whose time is set back sees them.
type fakeClock struct {
	mu      sync.Mutex
	base    time.Time // a real time.Now: times made from it keep a monotonic reading
	elapsed time.Duration
	wall    time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{base: time.Now(), wall: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.base.Add(c.elapsed) }
func (c *fakeClock) Wall() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.wall }

// advance moves both clocks on by d, as time passing does.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.elapsed += d
	c.wall = c.wall.Add(d)
	c.mu.Unlock()
}

// setWall sets the machine's clock (the monotonic one does not move).
func (c *fakeClock) setWall(t time.Time) { c.mu.Lock(); c.wall = t; c.mu.Unlock() }

// request records a response of code that took d and was sent now.
func request(s *Slot, c Clock, code int, d time.Duration, local bool) {
	s.Request(code, c.Now().Add(-d), d, local)
}

func newTestSlot(t *testing.T) (*Slot, *fakeClock) {
	t.Helper()
	c := newFakeClock()
	h := NewWithClock([]string{"a"}, c)
	if h.Slot("z") != nil {
		t.Fatal("an unknown slot has a history")
	}
	return h.Slot("a"), c
}

func TestBytesPerSlotIsTheSlotsSize(t *testing.T) {
	if got := unsafe.Sizeof(bucket{}); got != 100 {
		t.Errorf("a bucket takes %d bytes, the comment says 100", got)
	}
	if got := unsafe.Sizeof(event{}); got != 88 {
		t.Errorf("an event takes %d bytes, the comment says 88", got)
	}
	if got := unsafe.Sizeof(header{}); got != 48 {
		t.Errorf("the header takes %d bytes, the comment says 48", got)
	}
	if got := unsafe.Sizeof(Slot{}) + unsafe.Sizeof(store{}); got != BytesPerSlot {
		t.Fatalf("a Slot and its store take %d bytes, BytesPerSlot says %d", got, BytesPerSlot)
	}
}

// TestMemoryStaysBoundedUnderTraffic: a day and a half of requests,
// samples and events (every ring wrapped) leaves the heap where it was.
func TestMemoryStaysBoundedUnderTraffic(t *testing.T) {
	s, c := newTestSlot(t)
	detail := "exit status 1"
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 36 * 60 * 6 { // 36 h in 10-second steps
		for i := range 20 {
			request(s, c, 200+100*(i%4), time.Duration(i)*time.Millisecond, i == 7)
		}
		s.Sample(12.5, 80<<20)
		s.Mark(Crash, "", detail, 0)
		c.advance(FineStep)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 64<<10 {
		t.Fatalf("the heap grew by %d bytes over 36 h of traffic", grew)
	}
	if got := s.Read(Day); len(got.Times) != CoarseLen || len(got.Events) != MaxEvents {
		t.Fatalf("after 36 h: %d buckets and %d events in the day's series, want %d and %d", len(got.Times), len(got.Events), CoarseLen, MaxEvents)
	}
}

func TestRecordingAllocatesNothing(t *testing.T) {
	s, c := newTestSlot(t)
	ref, detail := "20261129T120000Z-abc1234", "exit status 1"
	for name, f := range map[string]func(){
		"Request": func() { request(s, c, 200, 3*time.Millisecond, false) },
		"Sample":  func() { s.Sample(3.5, 40<<20) },
		"Mark":    func() { s.Mark(Deploy, ref, detail, 0) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s allocates %.1f times per call", name, n)
		}
	}
}

// TestClockSetBackCorruptsNothing: the machine's time set back an hour (a
// full turn of the 10-second ring) and half an hour: the buckets go on
// from where they were, nothing recorded is lost or mixed up, and the
// times shown follow the machine's clock.
func TestClockSetBackCorruptsNothing(t *testing.T) {
	for _, back := range []time.Duration{time.Hour, 30 * time.Minute, 24 * time.Hour} {
		s, c := newTestSlot(t)
		c.advance(95 * time.Second) // bucket 9
		for range 5 {
			request(s, c, 200, time.Millisecond, false)
		}
		s.Mark(Deploy, "d1", "", 0)
		c.setWall(c.Wall().Add(-back))
		c.advance(10 * time.Second) // bucket 10, on the monotonic clock
		for range 3 {
			request(s, c, 500, time.Millisecond, false)
		}
		s.Mark(Crash, "", "exit status 1", 0)

		for _, r := range []Range{Hour, Day} {
			got := s.Read(r)
			var ok, errs uint32
			for i := range got.Times {
				ok += got.Status2xx[i]
				errs += got.Status5xx[i]
				if i > 0 && got.Times[i].Sub(got.Times[i-1]) != r.Step() {
					t.Fatalf("set back %s, %s: bucket times not one step apart: %v then %v", back, r, got.Times[i-1], got.Times[i])
				}
			}
			if ok != 5 || errs != 3 {
				t.Fatalf("set back %s, %s: %d 2xx and %d 5xx, want 5 and 3", back, r, ok, errs)
			}
			if r == Hour && (got.Status2xx[9] != 5 || got.Status5xx[10] != 3) {
				t.Fatalf("set back %s: 2xx %v, 5xx %v: the requests moved buckets", back, got.Status2xx, got.Status5xx)
			}
			if len(got.Events) != 2 || got.Events[0].Kind != Deploy || got.Events[1].Kind != Crash ||
				got.Events[1].At.Sub(got.Events[0].At) != 10*time.Second {
				t.Fatalf("set back %s, %s: events %+v", back, r, got.Events)
			}
			if !got.To.Equal(c.Wall()) || !got.Since.Equal(c.Wall().Add(-105*time.Second)) {
				t.Fatalf("set back %s, %s: to %v since %v, the wall clock says %v", back, r, got.To, got.Since, c.Wall())
			}
		}
	}
}

func TestClassesAndQuantiles(t *testing.T) {
	s, c := newTestSlot(t)
	for _, code := range []int{200, 204, 301, 404, 500, 502, 101} {
		request(s, c, code, time.Millisecond, false)
	}
	request(s, c, 503, 0, true)
	for range 90 {
		request(s, c, 200, 1500*time.Microsecond, false)
	}
	for range 10 {
		request(s, c, 200, 300*time.Millisecond, false)
	}
	got := s.Read(Hour)
	if len(got.Times) != 1 {
		t.Fatalf("%d buckets after no time at all", len(got.Times))
	}
	want := map[string][2]uint32{"requests": {got.Requests[0], 108}, "2xx": {got.Status2xx[0], 102},
		"3xx": {got.Status3xx[0], 1}, "4xx": {got.Status4xx[0], 1}, "5xx": {got.Status5xx[0], 2}, "unavailable": {got.Unavailable[0], 1}}
	for name, gw := range want {
		if gw[0] != gw[1] {
			t.Errorf("%s: %d, want %d", name, gw[0], gw[1])
		}
	}
	p50, p95, p99 := got.P50Ms[0], got.P95Ms[0], got.P99Ms[0]
	if p50 < 1 || p50 > 2 {
		t.Errorf("p50 %.3f ms, want between 1 and 2 (most requests took 1.5 ms)", p50)
	}
	if p95 < 256 || p95 > 512 || p99 < p95 || p99 > 512 {
		t.Errorf("p95 %.3f ms, p99 %.3f ms, want both between 256 and 512 (the slowest tenth took 300 ms)", p95, p99)
	}
	if !math.IsNaN(got.CPUPercent[0]) || !math.IsNaN(got.MemoryBytes[0]) {
		t.Errorf("CPU %v and memory %v without a sample: want NaN", got.CPUPercent[0], got.MemoryBytes[0])
	}
}

func TestLatencyBuckets(t *testing.T) {
	for d, want := range map[time.Duration]int{-time.Second: 0, 0: 0, 499 * time.Microsecond: 0,
		500 * time.Microsecond: 1, 999 * time.Microsecond: 1, time.Millisecond: 2, 5 * time.Millisecond: 4,
		4 * time.Second: 13, 4096 * time.Millisecond: 14, 8192 * time.Millisecond: 15, time.Hour: 15} {
		if got := latencyBucket(d); got != want {
			t.Errorf("latencyBucket(%s) = %d, want %d", d, got, want)
		}
		if d >= 0 && d < time.Hour {
			if lo, hi := latencyBounds(want); d < lo || (d >= hi && want < latencyBuckets-1) {
				t.Errorf("%s is in bucket %d, whose bounds are %s–%s", d, want, lo, hi)
			}
		}
	}
}

func TestSamplesMeanCPUAndLargestRSS(t *testing.T) {
	s, c := newTestSlot(t)
	s.Sample(10, 100<<20)
	s.Sample(30, 50<<20)
	c.advance(FineStep)
	s.Sample(50, 60<<20)
	h := s.Read(Hour)
	if h.CPUPercent[0] != 20 || h.MemoryBytes[0] != 100<<20 || h.CPUPercent[1] != 50 || h.MemoryBytes[1] != 60<<20 {
		t.Fatalf("CPU %v, memory %v", h.CPUPercent, h.MemoryBytes)
	}
	if d := s.Read(Day); d.CPUPercent[0] != 30 || d.MemoryBytes[0] != 100<<20 {
		t.Fatalf("the minute: CPU %v, memory %v", d.CPUPercent, d.MemoryBytes)
	}
}

// TestRingsForgetWhatIsOutOfRange: a bucket a full turn of the ring old is
// neither shown nor added to the one that reuses its place.
func TestRingsForgetWhatIsOutOfRange(t *testing.T) {
	s, c := newTestSlot(t)
	request(s, c, 500, time.Millisecond, false)
	s.Mark(Deploy, "old", "", 0)
	c.advance(time.Hour)
	request(s, c, 200, time.Millisecond, false)
	h := s.Read(Hour)
	if len(h.Times) != FineLen || !h.Times[0].After(h.From) {
		t.Fatalf("%d buckets from %v (range from %v)", len(h.Times), h.Times[0], h.From)
	}
	var errs, reqs uint32
	for i := range h.Times {
		errs += h.Status5xx[i]
		reqs += h.Requests[i]
	}
	if errs != 0 || reqs != 1 || h.Status2xx[FineLen-1] != 1 || len(h.Events) != 0 {
		t.Fatalf("an hour later: %d errors, %d requests, events %+v; want the 200 alone", errs, reqs, h.Events)
	}
	if d := s.Read(Day); d.Status5xx[0] != 1 || d.Requests[60] != 1 || len(d.Events) != 1 || d.Events[0].DeployID != "old" {
		t.Fatalf("the day keeps the first hour: 5xx %v… requests[60] %d, events %+v", d.Status5xx[:2], d.Requests[60], d.Events)
	}
}

func TestEventsKeepTheLastAndAreSorted(t *testing.T) {
	s, c := newTestSlot(t)
	c.advance(time.Minute)
	for i := range MaxEvents + 10 {
		s.Mark(Deploy, strings.Repeat("x", i%3), "", 0)
		c.advance(time.Second)
	}
	s.Mark(Crash, "", "signal: killed", 30*time.Second) // seen late: it happened earlier
	got := s.Read(Hour).Events
	if len(got) != MaxEvents {
		t.Fatalf("%d events kept, want %d", len(got), MaxEvents)
	}
	for i := 1; i < len(got); i++ {
		if got[i].At.Before(got[i-1].At) {
			t.Fatalf("events out of order at %d: %v after %v", i, got[i].At, got[i-1].At)
		}
	}
	if got[0].Kind != Deploy || got[len(got)-1].Kind != Deploy {
		t.Fatalf("the crash, 30 s late, is not among the last events: %+v", got)
	}
}

func TestParseRange(t *testing.T) {
	for in, want := range map[string]Range{"": Hour, "1h": Hour, "24h": Day} {
		if got, err := ParseRange(in); err != nil || got != want {
			t.Errorf("ParseRange(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"2h", "1H", "24h ", "-1h", "1h&range=24h"} {
		if _, err := ParseRange(bad); err == nil || !strings.Contains(err.Error(), "1h or 24h") {
			t.Errorf("ParseRange(%q): %v", bad, err)
		}
	}
}

func TestSeriesJSON(t *testing.T) {
	s, c := newTestSlot(t)
	request(s, c, 200, 2*time.Millisecond, false)
	raw, err := json.Marshal(s.Read(Hour))
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatalf("%v in %s", err, raw)
	}
	for _, key := range []string{"range", "step_seconds", "since", "from", "to", "times", "requests", "status_2xx",
		"status_5xx", "unavailable", "p50_ms", "p95_ms", "p99_ms", "cpu_percent", "memory_bytes", "events"} {
		if _, ok := back[key]; !ok {
			t.Errorf("no %q in %s", key, raw)
		}
	}
	if !strings.Contains(string(raw), `"cpu_percent":[null]`) || back["step_seconds"] != 10.0 {
		t.Errorf("unmeasured CPU is not null, or the step is wrong: %s", raw)
	}
}

// BenchmarkRequest is the per-request cost of the history.
func BenchmarkRequest(b *testing.B) {
	s := New([]string{"a"}).Slot("a")
	start := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Request(200, start, time.Duration(i%1000)*time.Microsecond, false)
	}
}

// BenchmarkRequestParallel is the same with every core recording at once.
func BenchmarkRequestParallel(b *testing.B) {
	s := New([]string{"a"}).Slot("a")
	start := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Request(200, start, time.Millisecond, false)
		}
	})
}

// TestReadMergedSumsAlignedBuckets: six 10-second buckets make a minute
// that starts on a whole minute of the history, counts add up, the largest
// RSS and the mean CPU hold, and quantiles come from the merged histogram.
func TestReadMergedSumsAlignedBuckets(t *testing.T) {
	s, c := newTestSlot(t)
	for i := range 13 { // buckets 0 … 12
		request(s, c, 200, time.Millisecond, false)
		if i == 4 {
			for range 9 {
				request(s, c, 500, 100*time.Millisecond, false)
			}
		}
		s.Sample(float64(i), uint64(i)<<20)
		c.advance(FineStep)
	}
	got := s.ReadMerged(Hour, 6)
	if got.StepSeconds != 60 || len(got.Times) != 3 || got.Times[1].Sub(got.Times[0]) != time.Minute {
		t.Fatalf("step %d s, times %v", got.StepSeconds, got.Times)
	}
	if got.Requests[0] != 15 || got.Status5xx[0] != 9 || got.Requests[1] != 6 || got.Requests[2] != 1 {
		t.Fatalf("requests %v, 5xx %v", got.Requests, got.Status5xx)
	}
	if got.MemoryBytes[0] != 5<<20 || got.CPUPercent[0] != 2.5 || got.MemoryBytes[2] != 12<<20 {
		t.Fatalf("memory %v, CPU %v", got.MemoryBytes, got.CPUPercent)
	}
	if p50 := got.P50Ms[0]; p50 < 64 || p50 > 128 {
		t.Fatalf("p50 of the first minute %.3f ms: 9 of its 15 requests took 100 ms", p50)
	}
}

// TestRingsAreOutsideTheHeap: the rings are mapped memory, so ten slots'
// histories add only their small heads to the Go heap (and to the garbage
// collector's goal), and a history that is garbage gives its rings back.
func TestRingsAreOutsideTheHeap(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h := New(names)
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > int64(len(names))*8<<10 {
		t.Fatalf("ten slots' histories took %d bytes of the Go heap", grew)
	}
	for _, name := range names { // written: the mapped pages work
		h.Slot(name).Request(200, time.Now(), time.Millisecond, false)
		h.Slot(name).Request(200, time.Now(), time.Millisecond, false)
		if got := h.Slot(name).Read(Day).Requests; got[len(got)-1] != 2 {
			t.Fatalf("slot %s: %v", name, got)
		}
	}
	runtime.KeepAlive(h)
	h = nil
	runtime.GC()
	runtime.GC()
}
