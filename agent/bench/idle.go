package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/internal/ctxtime"
)

// Figures of the idle agent and their targets (issue 2).
const (
	figIdleRSS = "idle RSS: agent + panel + 5 empty slots (VmRSS of the process tree)"
	figAPI     = "status query: `GET /api/processes`, keep-alive client"
	figCLI     = "status by CLI exec: `slotagent status --json`"
	// figAPIInProc repeats figAPI's samples beside PM2's in-process API.
	figAPIInProc = "… the same `GET /api/processes` samples, against PM2's in-process API"
)

var (
	targetIdleRSS = &Target{On: P99, Max: 25}
	targetAPI     = &Target{On: P99, Max: 5}
)

// settle is how long an agent idles after being touched before its RSS is read.
const settle = 2 * time.Second

// idle measures agents with five empty slots: the RSS of fresh agents, then,
// on the last of them, the status API and the status CLI.
func (b *bench) idle(ctx context.Context) []Row {
	fail := func(err error) []Row {
		return []Row{failed(figIdleRSS, targetIdleRSS, err), failed(figAPI, targetAPI, errSkipped),
			failed(figAPIInProc, nil, errSkipped), failed(figCLI, nil, errSkipped)}
	}
	var rss []float64
	var last *agentProc
	defer func() {
		if last != nil {
			b.stop(last)
		}
	}()
	for i := range b.n.idleRuns {
		if last != nil {
			if err := last.stop(); err != nil {
				return fail(err)
			}
		}
		b.logf("idle RSS: agent %d of %d", i+1, b.n.idleRuns)
		a, v, err := b.idleRSS(ctx)
		last = a
		if err != nil {
			return fail(err)
		}
		rss = append(rss, v)
	}
	rows := []Row{ours(figIdleRSS, "MiB", Summarize(rss), targetIdleRSS,
		fmt.Sprintf("each run a fresh agent; every port touched 3 times (GET / and /health), then %s idle", settle))}

	b.logf("GET /api/processes: %d requests", b.n.apiRequests)
	if lat, err := b.apiLatency(ctx, last); err != nil {
		rows = append(rows, failed(figAPI, targetAPI, err), failed(figAPIInProc, nil, err))
	} else {
		st := Summarize(msAll(lat))
		rows = append(rows, ours(figAPI, "ms", st, targetAPI,
			fmt.Sprintf("sequential, after %d warm-up requests", b.n.apiWarmup)),
			ours(figAPIInProc, "ms", st, nil, "slotagent: the row above"))
	}

	b.logf("slotagent status --json: %d runs", b.n.cliRuns)
	if lat, err := b.cliLatency(ctx, last); err != nil {
		rows = append(rows, failed(figCLI, nil, err))
	} else {
		rows = append(rows, ours(figCLI, "ms", Summarize(msAll(lat)), nil,
			"wall time of the whole exec: process start, unix socket round trip, JSON out"))
	}
	return rows
}

// errSkipped marks figures measured on an idle agent that could not be had.
var errSkipped = errors.New("skipped: the idle agent could not be measured")

// idleRSS starts a fresh agent, touches every port, lets it idle and
// returns it (still running, for the caller to stop) with its tree's RSS in MiB.
func (b *bench) idleRSS(ctx context.Context) (*agentProc, float64, error) {
	a, err := b.newAgent()
	if err != nil {
		return nil, 0, err
	}
	if err := a.startReady(); err != nil {
		return a, 0, err
	}
	client := newClient()
	defer client.CloseIdleConnections()
	paths := map[string][]string{"admin": {"/healthz", "/api/processes", "/api/slots", "/api/slots/a/health"}}
	for _, s := range config.SlotNames {
		paths[s] = []string{"/", "/health"}
	}
	for range 3 {
		for port, ps := range paths {
			for _, p := range ps {
				if status, _, err := get(client, a.url(port, p)); err != nil || status != http.StatusOK {
					return a, 0, fmt.Errorf("touch %s: status %d, %v", a.url(port, p), status, err)
				}
			}
		}
	}
	client.CloseIdleConnections()
	if err := ctxtime.Sleep(ctx, settle); err != nil {
		return a, 0, err
	}
	rss, err := treeRSS(a.pid())
	if err != nil {
		return a, 0, err
	}
	return a, float64(rss) / (1 << 20), nil
}

// apiLatency times GET /api/processes one request at a time over one
// keep-alive connection.
func (b *bench) apiLatency(ctx context.Context, a *agentProc) ([]time.Duration, error) {
	client := newClient()
	defer client.CloseIdleConnections()
	url := a.url("admin", "/api/processes")
	lat := make([]time.Duration, 0, b.n.apiRequests)
	for i := range b.n.apiWarmup + b.n.apiRequests {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		start := time.Now()
		status, body, err := get(client, url)
		d := time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("GET /api/processes: %w", err)
		}
		if status != http.StatusOK || !json.Valid(body) {
			return nil, fmt.Errorf("GET /api/processes: status %d, body %.200q", status, body)
		}
		if i >= b.n.apiWarmup {
			lat = append(lat, d)
		}
	}
	return lat, nil
}

// cliLatency times whole runs of `slotagent status --json`.
func (b *bench) cliLatency(ctx context.Context, a *agentProc) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, b.n.cliRuns)
	for range b.n.cliRuns {
		start := time.Now()
		out, err := a.cli(ctx, "status", "--json")
		d := time.Since(start)
		if err != nil {
			return nil, err
		}
		if !json.Valid([]byte(out)) {
			return nil, fmt.Errorf("slotagent status --json printed no valid JSON: %.200q", out)
		}
		lat = append(lat, d)
	}
	return lat, nil
}
