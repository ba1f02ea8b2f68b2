package history

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Range is a span of history that can be read: the last hour in 10-second
// buckets, or the last 24 hours in 1-minute buckets.
type Range string

// The ranges.
const (
	Hour Range = "1h"
	Day  Range = "24h"
)

// ParseRange reads a range as the API takes it; "" is Hour.
func ParseRange(s string) (Range, error) {
	switch Range(s) {
	case "", Hour:
		return Hour, nil
	case Day:
		return Day, nil
	}
	return "", fmt.Errorf("range %q: it is 1h or 24h", s)
}

// Step is the length of the range's buckets.
func (r Range) Step() time.Duration {
	if r == Day {
		return CoarseStep
	}
	return FineStep
}

// Series is a slot's history over a range: one entry per bucket in each
// slice, oldest first, from the range's start or the history's (the agent's
// start), whichever is later, to the bucket under way. Optional values are
// NaN where nothing was measured (null in JSON).
type Series struct {
	Range Range `json:"range"`
	// StepSeconds is the length of a bucket.
	StepSeconds int `json:"step_seconds"`
	// Since is when the history began: when its file was made, or, for a
	// history in memory only, when the agent started.
	Since time.Time `json:"since"`
	// From and To bound the range (To is now); the buckets may begin later
	// than From, at Since.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Times are the buckets' start times.
	Times []time.Time `json:"times"`
	// Requests counts every response (1xx included).
	Requests []uint32 `json:"requests"`
	// Status2xx … Status5xx count the app's responses by class;
	// Unavailable the slot's own 503s while the app was down.
	Status2xx   []uint32 `json:"status_2xx"`
	Status3xx   []uint32 `json:"status_3xx"`
	Status4xx   []uint32 `json:"status_4xx"`
	Status5xx   []uint32 `json:"status_5xx"`
	Unavailable []uint32 `json:"unavailable"`
	// P50Ms, P95Ms and P99Ms are latency quantiles from a histogram with
	// bounds doubling from 0.5 ms (interpolated inside a bound).
	P50Ms Values `json:"p50_ms"`
	P95Ms Values `json:"p95_ms"`
	P99Ms Values `json:"p99_ms"`
	// CPUPercent is the mean of the CPU samples (% of one core);
	// MemoryBytes the largest RSS sampled, of the app's process tree.
	CPUPercent  Values  `json:"cpu_percent"`
	MemoryBytes Values  `json:"memory_bytes"`
	Events      []Event `json:"events"`
}

// Event is something that happened to the slot.
type Event struct {
	Kind Kind      `json:"kind"`
	At   time.Time `json:"at"`
	// DeployID is the deploy record of a deploy or rollback.
	DeployID string `json:"deploy_id,omitempty"`
	// Detail says more: a crash's exit status.
	Detail string `json:"detail,omitempty"`
}

// Values are measurements where NaN is "not measured", null in JSON.
type Values []float64

// MarshalJSON writes the numbers, null for NaN.
func (v Values) MarshalJSON() ([]byte, error) {
	out := make([]byte, 0, 2+len(v)*6)
	out = append(out, '[')
	for i, x := range v {
		if i > 0 {
			out = append(out, ',')
		}
		if math.IsNaN(x) {
			out = append(out, "null"...)
			continue
		}
		out = strconv.AppendFloat(out, x, 'f', -1, 64)
	}
	return append(out, ']'), nil
}

var _ json.Marshaler = Values(nil)

// Read returns the slot's history over r.
func (s *Slot) Read(r Range) Series { return s.ReadMerged(r, 1) }

// ReadMerged is Read with every per consecutive buckets merged into one
// (aligned on multiples of per, so the entries do not shift as time
// passes): fewer points for a chart, quantiles still from the merged
// histograms.
func (s *Slot) ReadMerged(r Range, per int) Series {
	per = max(per, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	step, ring := r.Step(), s.store.fine[:]
	if r == Day {
		ring = s.store.coarse[:]
	}
	now, wall := s.elapsed(), s.clock.Wall()
	// A time on the monotonic clock, labelled with the wall clock of now.
	label := func(at time.Duration) time.Time { return wall.Add(at - now).Round(time.Millisecond) }
	cur := int64(now / step)
	first := max(0, cur-int64(len(ring))+1)
	n := int(cur/int64(per) - first/int64(per) + 1)
	out := Series{Range: r, StepSeconds: int(step / time.Second * time.Duration(per)),
		Since: label(0), From: label(now - time.Duration(len(ring))*step), To: label(now),
		Times: make([]time.Time, 0, n), Events: []Event{}}
	for _, sl := range []*[]uint32{&out.Requests, &out.Status2xx, &out.Status3xx, &out.Status4xx, &out.Status5xx, &out.Unavailable} {
		*sl = make([]uint32, 0, n)
	}
	for _, sl := range []*Values{&out.P50Ms, &out.P95Ms, &out.P99Ms, &out.CPUPercent, &out.MemoryBytes} {
		*sl = make(Values, 0, n)
	}
	for g := first / int64(per); g <= cur/int64(per); g++ {
		var b bucket
		for k := max(first, g*int64(per)); k <= min(cur, (g+1)*int64(per)-1); k++ {
			if kb := &ring[k%int64(len(ring))]; kb.n == uint32(k)+1 {
				b.add(kb)
			} // else nothing happened in it
		}
		out.Times = append(out.Times, label(time.Duration(g*int64(per))*step))
		var total uint32
		for _, c := range b.latency {
			total += c
		}
		out.Requests = append(out.Requests, total)
		out.Status2xx = append(out.Status2xx, b.classes[class2xx])
		out.Status3xx = append(out.Status3xx, b.classes[class3xx])
		out.Status4xx = append(out.Status4xx, b.classes[class4xx])
		out.Status5xx = append(out.Status5xx, b.classes[class5xx])
		out.Unavailable = append(out.Unavailable, b.classes[classUnavailable])
		out.P50Ms = append(out.P50Ms, b.quantile(0.50, total))
		out.P95Ms = append(out.P95Ms, b.quantile(0.95, total))
		out.P99Ms = append(out.P99Ms, b.quantile(0.99, total))
		cpu, mem := math.NaN(), math.NaN()
		if b.samples > 0 {
			cpu = float64(b.cpuSum) / float64(b.samples)
			mem = float64(b.rssKiB) * 1024
		}
		out.CPUPercent = append(out.CPUPercent, cpu)
		out.MemoryBytes = append(out.MemoryBytes, mem)
	}
	start := time.Duration(first) * step
	for i := range min(s.store.header.events, MaxEvents) {
		e := &s.store.events[i]
		if ev, ok := e.public(label); ok && e.at >= start {
			out.Events = append(out.Events, ev)
		}
	}
	slices.SortStableFunc(out.Events, func(a, b Event) int { return a.At.Compare(b.At) })
	return out
}

// add merges o into b.
func (b *bucket) add(o *bucket) {
	for i := range b.classes {
		b.classes[i] += o.classes[i]
	}
	for i := range b.latency {
		b.latency[i] += o.latency[i]
	}
	b.cpuSum += o.cpuSum
	b.samples += o.samples
	b.rssKiB = max(b.rssKiB, o.rssKiB)
}

// quantile is the q-quantile of the bucket's latency in milliseconds,
// interpolated inside the histogram bucket it falls in; NaN without
// requests.
func (b *bucket) quantile(q float64, total uint32) float64 {
	if total == 0 {
		return math.NaN()
	}
	rank := q * float64(total)
	var seen float64
	for i, c := range b.latency {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			lo, hi := latencyBounds(i)
			frac := (rank - seen) / float64(c)
			ms := (float64(lo) + frac*float64(hi-lo)) / float64(time.Millisecond)
			return math.Round(ms*1000) / 1000
		}
		seen += float64(c)
	}
	lo, _ := latencyBounds(latencyBuckets - 1)
	return float64(lo) / float64(time.Millisecond)
}
