package bench

import (
	"math"
	"slices"
	"time"
)

// Stat summarises repeated samples of one figure, in the unit of its row.
// A statistic that does not apply is NaN (shown as "—").
type Stat struct {
	// N is the number of samples.
	N int
	// Median is the 50th percentile.
	Median float64
	// P99 is the 99th percentile (nearest rank: the maximum below 100 samples).
	P99 float64
	// Min and Max are the extremes.
	Min, Max float64
}

// Summarize computes the statistics of samples; an empty slice gives N = 0
// and NaN everywhere.
func Summarize(samples []float64) Stat {
	if len(samples) == 0 {
		nan := math.NaN()
		return Stat{Median: nan, P99: nan, Min: nan, Max: nan}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return Stat{
		N:      len(s),
		Median: percentile(s, 50),
		P99:    percentile(s, 99),
		Min:    s[0],
		Max:    s[len(s)-1],
	}
}

// OnlyMedian is a Stat carrying one derived median (a difference of two
// medians, say); its other statistics do not apply.
func OnlyMedian(n int, median float64) Stat {
	nan := math.NaN()
	return Stat{N: n, Median: median, P99: nan, Min: nan, Max: nan}
}

// percentile is the nearest-rank p-th percentile of sorted.
func percentile(sorted []float64, p float64) float64 {
	if p == 50 && len(sorted)%2 == 0 {
		m := len(sorted) / 2
		return (sorted[m-1] + sorted[m]) / 2
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ms converts d to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// msAll converts durations to milliseconds.
func msAll(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = ms(d)
	}
	return out
}
