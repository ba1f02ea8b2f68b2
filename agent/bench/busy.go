package bench

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
)

// figBusyRSS is the agent's own memory while all five slots serve traffic
// (what each request's bookkeeping, such as the slots' history, costs).
const figBusyRSS = "busy RSS: the agent alone (its VmRSS, not the apps') with the hello app in all 5 slots under load"

// busyConns is the keep-alive connections sent at each slot at once.
const busyConns = 4

// busy starts an agent with the hello app in every slot, loads the five
// slot ports at once and samples the agent's VmRSS during the load.
func (b *bench) busy(ctx context.Context) []Row {
	if _, err := exec.LookPath("node"); err != nil {
		return []Row{failed(figBusyRSS, nil, errors.New("node is not installed"))}
	}
	rss, requests, err := b.busyRSS(ctx)
	if err != nil {
		return []Row{failed(figBusyRSS, nil, err)}
	}
	return []Row{ours(figBusyRSS, "MiB", Summarize(rss), nil,
		fmt.Sprintf("%d keep-alive connections per slot sending `GET /health` for %s (%d requests in all, after %s of warm-up each); VmRSS read every 500ms meanwhile",
			busyConns, b.n.loadDuration, requests, loadWarmup))}
}

// busyRSS runs the load and returns the RSS samples (MiB) and the
// requests answered.
func (b *bench) busyRSS(ctx context.Context) ([]float64, int, error) {
	a, err := b.agentWithApps(config.SlotNames...)
	if err != nil {
		return nil, 0, err
	}
	defer b.stop(a)
	if err := a.startReady(); err != nil {
		return nil, 0, err
	}
	client := newClient()
	defer client.CloseIdleConnections()
	for _, s := range config.SlotNames {
		if _, err := pollUntil(ctx, client, a.url(s, "/health"), bodyIs("ok"), time.Now(), 20*time.Second, nil); err != nil {
			return nil, 0, fmt.Errorf("the app in slot %s never answered: %w%s", s, err, a.logTail())
		}
	}
	b.logf("busy RSS: %d connections on each of 5 slots for %s", busyConns, b.n.loadDuration)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		requests int
		loadErr  error
	)
	for _, s := range config.SlotNames {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := runLoad(ctx, a.url(s, "/health"), busyConns, b.n.loadDuration)
			mu.Lock()
			defer mu.Unlock()
			requests += len(res.lat)
			if err == nil && res.failed > 0 {
				err = fmt.Errorf("%d requests failed", res.failed)
			}
			loadErr = errors.Join(loadErr, err)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var rss []float64
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-tick.C:
			v, err := vmRSS(a.pid())
			if err != nil {
				return nil, 0, err
			}
			rss = append(rss, float64(v)/(1<<20))
		}
	}
	if loadErr != nil {
		return nil, 0, loadErr
	}
	return rss, requests, nil
}
