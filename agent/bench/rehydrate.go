package bench

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/state"
)

const figRehydrate = "rehydrate, 5 deployed apps: exec of the stack → admin and 5 apps all answering `/health`"

// agentWithApps prepares (does not start) an agent whose state file gives
// each of slots the hello app as its current release, as deploys leave it.
func (b *bench) agentWithApps(slots ...string) (*agentProc, error) {
	a, err := b.newAgent()
	if err != nil {
		return nil, err
	}
	return a, b.deployed(a, testkit.HelloApp, nil, slots...)
}

// deployed writes a's state file: each of slots has the app src, with the
// slot env env, as its current release.
func (b *bench) deployed(a *agentProc, src string, env map[string]string, slots ...string) error {
	st := state.New()
	for _, slot := range slots {
		dir, err := b.writeApp(src)
		if err != nil {
			return err
		}
		st.Slots[slot] = &state.Slot{
			Desired: state.DesiredRunning, Current: "r1", Env: env,
			Releases: []state.Release{{ID: "r1", Dir: dir, Command: "node server.js", CreatedAt: time.Now().UTC()}},
		}
	}
	if err := state.Save(filepath.Join(a.dataDir, "state.json"), st); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	return nil
}

// rehydrate times `slotagent run` with five deployed apps in its state
// until the admin API and the five apps (not placeholders) answer.
func (b *bench) rehydrate(ctx context.Context) []Row {
	if _, err := exec.LookPath("node"); err != nil {
		return []Row{failed(figRehydrate, nil, errors.New("node is not installed"))}
	}
	client := newClient()
	defer client.CloseIdleConnections()
	var runs []float64
	for i := range b.n.coldRuns {
		b.logf("rehydrate: run %d of %d", i+1, b.n.coldRuns)
		d, err := func() (time.Duration, error) {
			a, err := b.agentWithApps(config.SlotNames...)
			if err != nil {
				return 0, err
			}
			defer b.stop(a)
			start := time.Now()
			if err := a.start(); err != nil {
				return 0, err
			}
			all, err := pollUntil(ctx, client, a.url("admin", "/healthz"), ok200, start, 10*time.Second, nil)
			if err != nil {
				return 0, fmt.Errorf("%w%s", err, a.logTail())
			}
			for _, s := range config.SlotNames {
				d, err := pollUntil(ctx, client, a.url(s, "/health"), bodyIs("ok"), start, 20*time.Second, nil)
				if err != nil {
					return 0, fmt.Errorf("%w%s", err, a.logTail())
				}
				all = max(all, d)
			}
			return all, nil
		}()
		if err != nil {
			return []Row{failed(figRehydrate, nil, fmt.Errorf("run %d: %w", i+1, err))}
		}
		runs = append(runs, ms(d))
	}
	return []Row{ours(figRehydrate, "ms", Summarize(runs), nil,
		"exec `slotagent run` on a data dir whose state has the hello app deployed in all five slots (fresh each run) → `/healthz` and each app's `/health` \"ok\" through its slot")}
}
