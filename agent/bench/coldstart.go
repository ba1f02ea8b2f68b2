package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
)

const figCold = "cold start: exec `slotagent run` → admin `/healthz` and 5 slot `/health` all 200"

var targetCold = &Target{On: Median, Max: 300}

// coldStart times `slotagent run` until all six ports answer, each run with
// a fresh data dir (first boot).
func (b *bench) coldStart(ctx context.Context) []Row {
	var runs []time.Duration
	for i := range b.n.coldRuns {
		b.logf("cold start: run %d of %d", i+1, b.n.coldRuns)
		d, err := b.coldStartOnce(ctx)
		if err != nil {
			return []Row{failed(figCold, targetCold, fmt.Errorf("run %d: %w", i+1, err))}
		}
		runs = append(runs, d)
	}
	return []Row{ours(figCold, "ms", Summarize(msAll(runs)), targetCold, "fresh data dir and ports each run")}
}

func (b *bench) coldStartOnce(ctx context.Context) (time.Duration, error) {
	a, err := b.newAgent()
	if err != nil {
		return 0, err
	}
	defer b.stop(a)
	return a.timeSixPorts(ctx)
}

// timeSixPorts starts a and times it until the admin API and the five slots
// answer 200.
func (a *agentProc) timeSixPorts(ctx context.Context) (time.Duration, error) {
	client := newClient()
	defer client.CloseIdleConnections()
	urls := []string{a.url("admin", "/healthz")}
	for _, s := range config.SlotNames {
		urls = append(urls, a.url(s, "/health"))
	}
	start := time.Now()
	if err := a.start(); err != nil {
		return 0, err
	}
	// Polled one after the other: the last answer is when all six answer.
	var all time.Duration
	for _, u := range urls {
		d, err := pollUntil(ctx, client, u, ok200, start, 10*time.Second, nil)
		if err != nil {
			return 0, fmt.Errorf("%w%s", err, a.logTail())
		}
		all = max(all, d)
	}
	return all, nil
}
