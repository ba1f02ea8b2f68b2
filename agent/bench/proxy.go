package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Figures of the proxy overhead and their targets (issue 12: one
// sequential client, the proxy adds to the p50 at most what the splice
// reference adds, plus spliceMargin — what any proxy in a process of its own
// pays here is not the relay's to save; 32 connections: at least 90 % of
// the splice reference's share of the direct throughput, measured in the
// same run (issue 24; on 2 cores the splice itself reaches about 50 %, so
// issue 7's absolute 50 % measured the machine), else that 50 %).
const (
	figLat1     = "proxy, 1 keep-alive connection: latency of `GET /health` (slotagent: through the slot port; PM2: straight to the app)"
	figRPS1     = "… throughput, 1 connection"
	figAdded1   = "… added by the proxy to the p50, 1 connection"
	figLat32    = "proxy, 32 keep-alive connections: latency of `GET /health`"
	figRPS32    = "… throughput, 32 connections"
	figShare32  = "… proxied throughput as a share of the direct one, 32 connections"
	figSplice1  = "reference: a plain TCP splice proxy in its own process (Go, io.Copy both ways, no HTTP), 1 connection: added to the p50"
	figSplice32 = "… the same splice proxy, 32 connections: share of the direct throughput"
	loadWarmup  = 500 * time.Millisecond
	loadSlices  = 4
	unitRPS     = "req/s"
	unitPercent = "%"
)

var (
	// targetAdded1 stands for the one-connection target when the splice
	// reference could not be measured: the absolute bound of issue 7.
	targetAdded1  = &Target{On: Median, Max: 0.1}
	targetShare32 = &Target{On: Median, Max: 50, AtLeast: true}
)

// spliceShare is the part of the splice reference's 32-connection share
// the relay must reach.
const spliceShare = 0.9

// spliceMargin is what the relay may add to the p50 beyond the splice
// reference's, in ms.
const spliceMargin = 0.05

// proxy measures the slot proxy under load: the hello app in slot a, a Go
// load generator with fixed concurrency and duration, through the slot port
// and straight to the app's own port (the same process), alternately. The
// direct figures go in the PM2 column: with PM2 the app listens on the slot
// port itself, with no proxy in between.
func (b *bench) proxy(ctx context.Context) []Row {
	fail := func(err error) []Row {
		return []Row{failed(figLat1, nil, err), failed(figRPS1, nil, err), failed(figAdded1, targetAdded1, err),
			failed(figLat32, nil, err), failed(figRPS32, nil, err), failed(figShare32, targetShare32, err)}
	}
	if _, err := exec.LookPath("node"); err != nil {
		return fail(errors.New("node is not installed"))
	}
	a, err := b.agentWithApps(appSlot)
	if err != nil {
		return fail(err)
	}
	defer b.stop(a)
	if err := a.startReady(); err != nil {
		return fail(err)
	}
	client := newClient()
	defer client.CloseIdleConnections()
	if _, err := pollUntil(ctx, client, a.url(appSlot, "/health"), bodyIs("ok"), time.Now(), 10*time.Second, nil); err != nil {
		return fail(fmt.Errorf("the app in slot %s never answered: %w%s", appSlot, err, a.logTail()))
	}
	_, body, err := get(client, a.url(appSlot, "/pid"))
	if err != nil {
		return fail(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(body)))
	if err != nil {
		return fail(fmt.Errorf("the app's /pid answered %q", body))
	}
	appPort, err := envOf(pid, "PORT")
	if err != nil {
		return fail(err)
	}
	slotURL, directURL := a.url(appSlot, "/health"), "http://127.0.0.1:"+appPort+"/health"

	targets := []struct{ name, url string }{{"direct", directURL}, {"slot", slotURL}}
	var spliceErr error
	if len(b.splice) > 0 {
		addr, stop, err := spliceProxy(ctx, b.splice, "127.0.0.1:"+appPort)
		if err != nil {
			spliceErr = err
		} else {
			defer stop()
			targets = append(targets, struct{ name, url string }{"splice", "http://" + addr + "/health"})
		}
	}
	// The targets take turns in short slices, so that the machine's speed
	// drifting during the run (a noisy VM) weighs on each alike.
	slice := b.n.loadDuration / loadSlices
	results := map[string]loadResult{}
	for _, conns := range []int{1, 32} {
		for i := range loadSlices {
			for _, target := range targets {
				b.logf("proxy: %d connection(s), %s, slice %d of %d (%s)", conns, target.name, i+1, loadSlices, slice)
				res, err := runLoad(ctx, target.url, conns, slice)
				if err != nil {
					return fail(fmt.Errorf("%s, %d connections: %w", target.name, conns, err))
				}
				key := fmt.Sprintf("%s%d", target.name, conns)
				results[key] = results[key].add(res)
			}
		}
	}
	both := func(fig, unit string, slot, direct Stat, target *Target, note string) Row {
		return Row{Figure: fig, Unit: unit, Cells: map[string]Stat{Ours: slot, PM2: direct}, Target: target, Note: note}
	}
	s1, d1, s32, d32 := results["slot1"], results["direct1"], results["slot32"], results["direct32"]
	lat := func(r loadResult) Stat { return Summarize(msAll(r.lat)) }
	rps := func(r loadResult) Stat { return OnlyMedian(len(r.lat), r.rps()) }
	p1, p32 := results["splice1"], results["splice32"]
	spliceAdded := lat(p1).Median - lat(d1).Median
	added1, addedNote := targetAdded1, "p50 through the slot − p50 direct; no splice reference, so the absolute target"
	if spliceErr == nil && len(b.splice) > 0 {
		added1 = &Target{On: Median, Max: spliceAdded + spliceMargin}
		addedNote = fmt.Sprintf("p50 through the slot − p50 direct; target: what the splice reference adds (%s ms, below) + %s ms", number(spliceAdded), number(spliceMargin))
	}
	share32, shareNote := targetShare32, "the client, the proxy and node share the machine's cores; no splice reference, so the absolute target"
	if spliceErr == nil && len(b.splice) > 0 {
		ref := 100 * p32.rps() / d32.rps()
		share32 = &Target{On: Median, Max: spliceShare * ref, AtLeast: true}
		shareNote = fmt.Sprintf("the client, the proxy and node share the machine's cores; target: %.0f %% of the splice reference's share (%s %%, below)", 100*spliceShare, number(ref))
	}
	how := fmt.Sprintf("%s per target in %d slices taking turns, each after %s of warm-up; Go client, one keep-alive connection per worker, each worker sequential; same app process (the hello app in slot a), direct = its own port", b.n.loadDuration, loadSlices, loadWarmup)
	rows := []Row{
		both(figLat1, "ms", lat(s1), lat(d1), nil, how),
		both(figRPS1, unitRPS, rps(s1), rps(d1), nil, fmt.Sprintf("%d failed requests through the slot, %d direct", s1.failed, d1.failed)),
		ours(figAdded1, "ms", OnlyMedian(len(s1.lat), lat(s1).Median-lat(d1).Median), added1, addedNote),
		both(figLat32, "ms", lat(s32), lat(d32), nil, "32 workers, same method"),
		both(figRPS32, unitRPS, rps(s32), rps(d32), nil, fmt.Sprintf("%d failed requests through the slot, %d direct", s32.failed, d32.failed)),
		ours(figShare32, unitPercent, OnlyMedian(len(s32.lat), 100*s32.rps()/d32.rps()), share32, shareNote),
	}
	switch {
	case spliceErr != nil:
		return append(rows, failed(figSplice1, nil, spliceErr), failed(figSplice32, nil, spliceErr))
	case len(b.splice) == 0:
		return rows
	}
	return append(rows,
		ours(figSplice1, "ms", OnlyMedian(len(p1.lat), spliceAdded), nil,
			fmt.Sprintf("p50 %s ms through it, same runs and method; what any proxy in a process of its own pays here for the two extra process wake-ups per request", number(lat(p1).Median))),
		ours(figSplice32, unitPercent, OnlyMedian(len(p32.lat), 100*p32.rps()/d32.rps()), nil,
			fmt.Sprintf("%s req/s through it, %d failed", number(p32.rps()), p32.failed)),
	)
}

// envOf reads one variable of a process's environment.
func envOf(pid int, key string) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return "", fmt.Errorf("read the environment of %d: %w", pid, err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := strings.CutPrefix(string(kv), key+"="); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("process %d has no %s", pid, key)
}

// loadResult is what a load run measured.
type loadResult struct {
	lat      []time.Duration // one per successful request
	failed   int
	duration time.Duration
}

// add is r and o measured as one run.
func (r loadResult) add(o loadResult) loadResult {
	return loadResult{lat: append(r.lat, o.lat...), failed: r.failed + o.failed, duration: r.duration + o.duration}
}

// rps is the successful requests per second.
func (r loadResult) rps() float64 { return float64(len(r.lat)) / r.duration.Seconds() }

// runLoad sends GET url from conns workers, each over its own keep-alive
// connection, one request at a time, for loadWarmup (not counted) then d.
func runLoad(ctx context.Context, url string, conns int, d time.Duration) (loadResult, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	start := time.Now()
	measureFrom, end := start.Add(loadWarmup), start.Add(loadWarmup+d)
	var mu sync.Mutex
	var res loadResult
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			failed := 0
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				resp, err := client.Get(url)
				ok := err == nil && resp.StatusCode == http.StatusOK
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				t1 := time.Now()
				if t0.Before(measureFrom) || t1.After(end) {
					continue
				}
				if ok {
					lat = append(lat, t1.Sub(t0))
				} else {
					failed++
					time.Sleep(time.Millisecond) // a refused connection must not spin
				}
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.failed += failed
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.duration = d
	if len(res.lat) == 0 {
		return res, fmt.Errorf("no successful request to %s", url)
	}
	return res, nil
}
