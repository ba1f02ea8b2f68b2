package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/internal/ctxtime"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/postgres"
)

const (
	figColdPGFirst   = "cold start with PostgreSQL, first boot (initdb): exec `slotagent run` → admin `/healthz` and 5 slot `/health` all 200"
	figColdPGRestart = "cold start with PostgreSQL, restart (cluster on disk): exec `slotagent run` → admin `/healthz` and 5 slot `/health` all 200"
	figRehydratePG   = "rehydrate with PostgreSQL: exec `slotagent run` → 5 apps using `DATABASE_URL` answering `/health`"
)

// pgOnlineTimeout bounds a first boot's initdb, start and databases.
const pgOnlineTimeout = 2 * time.Minute

// newPostgresAgent prepares an agent with PostgreSQL on, on a free port, in
// directories the postgres user can get through when the bench runs as root.
func (b *bench) newPostgresAgent() (*agentProc, error) {
	a, err := b.newAgent()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{b.root, filepath.Dir(a.dataDir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, fmt.Errorf("let the postgres user through %s: %w", d, err)
		}
	}
	port, err := testkit.FreePortErr()
	if err != nil {
		return nil, err
	}
	a.env = append(a.env, "SLOTAGENT_POSTGRES_ENABLED=true", "SLOTAGENT_POSTGRES_PORT="+strconv.Itoa(port))
	return a, nil
}

// waitPostgres waits until the agent's PostgreSQL is online (GET /api/db)
// and returns how long after since.
func (a *agentProc) waitPostgres(ctx context.Context, since time.Time) (time.Duration, error) {
	client := newClient()
	defer client.CloseIdleConnections()
	var st postgres.Status
	for deadline := time.Now().Add(pgOnlineTimeout); time.Now().Before(deadline); {
		if code, body, err := get(client, a.url("admin", "/api/db")); err == nil && code == 200 {
			if err := json.Unmarshal(body, &st); err == nil && st.State == postgres.StateOnline {
				return time.Since(since), nil
			}
		}
		if err := ctxtime.Sleep(ctx, 20*time.Millisecond); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("PostgreSQL is %s (%s), not online, after %s%s", st.State, st.Detail, pgOnlineTimeout, a.logTail())
}

// coldStartPostgres times `slotagent run` with PostgreSQL on until the six
// ports answer: on a first boot (fresh data dir: initdb), then again on
// the same data dir (the cluster is there), each run until PostgreSQL is
// online before the agent stops.
func (b *bench) coldStartPostgres(ctx context.Context) []Row {
	if _, err := postgres.LocateBinaries(""); err != nil {
		return []Row{failed(figColdPGFirst, targetCold, err), failed(figColdPGRestart, targetCold, err)}
	}
	// runs[0] is the first boots, runs[1] the restarts; online[i] when
	// PostgreSQL was online in each.
	var runs, online [2][]time.Duration
	for i := range b.n.coldRuns {
		b.logf("cold start with PostgreSQL: run %d of %d", i+1, b.n.coldRuns)
		a, err := b.newPostgresAgent()
		for k := 0; k < 2 && err == nil; k++ {
			var d, up time.Duration
			start := time.Now()
			if d, err = a.timeSixPorts(ctx); err == nil {
				up, err = a.waitPostgres(ctx, start)
			}
			b.stop(a)
			runs[k], online[k] = append(runs[k], d), append(online[k], up)
		}
		if err != nil {
			err = fmt.Errorf("run %d: %w", i+1, err)
			return []Row{failed(figColdPGFirst, targetCold, err), failed(figColdPGRestart, targetCold, err)}
		}
	}
	return []Row{
		ours(figColdPGFirst, "ms", Summarize(msAll(runs[0])), targetCold, fmt.Sprintf(
			"fresh data dir and ports each run; PostgreSQL itself online after a median of %.0f ms (initdb, server, databases: in the background)", Summarize(msAll(online[0])).Median)),
		ours(figColdPGRestart, "ms", Summarize(msAll(runs[1])), targetCold, fmt.Sprintf(
			"the first boot's data dir again; PostgreSQL online after a median of %.0f ms", Summarize(msAll(online[1])).Median)),
	}
}

// rehydratePostgres times `slotagent run` on a data dir whose cluster
// exists and whose state has an app using its slot's database in all five
// slots, until every app answers /health (a query through DATABASE_URL).
func (b *bench) rehydratePostgres(ctx context.Context) []Row {
	bins, err := postgres.LocateBinaries("")
	if err == nil {
		_, err = exec.LookPath("node")
	}
	if err != nil {
		return []Row{failed(figRehydratePG, nil, err)}
	}
	a, err := b.newPostgresAgent()
	if err == nil {
		err = b.deployed(a, testkit.DBHealthApp, map[string]string{"PSQL": bins.Psql}, config.SlotNames...)
	}
	if err == nil { // the first boot makes the cluster
		if err = a.start(); err == nil {
			_, err = a.waitPostgres(ctx, time.Now())
		}
		b.stop(a)
	}
	if err != nil {
		return []Row{failed(figRehydratePG, nil, fmt.Errorf("first boot: %w", err))}
	}
	client := newClient()
	defer client.CloseIdleConnections()
	var runs []time.Duration
	for i := range b.n.coldRuns {
		b.logf("rehydrate with PostgreSQL: run %d of %d", i+1, b.n.coldRuns)
		start := time.Now()
		err = a.start()
		var all time.Duration
		for _, s := range config.SlotNames {
			if err != nil {
				break
			}
			var d time.Duration
			d, err = pollUntil(ctx, client, a.url(s, "/health"), bodyIs("ok"), start, 40*time.Second, nil)
			all = max(all, d)
		}
		b.stop(a)
		if err != nil {
			return []Row{failed(figRehydratePG, nil, fmt.Errorf("run %d: %w%s", i+1, err, a.logTail()))}
		}
		runs = append(runs, all)
	}
	return []Row{ours(figRehydratePG, "ms", Summarize(msAll(runs)), nil,
		"one data dir whose cluster exists, the same five apps each run; an app starts once PostgreSQL is ready and answers `/health` once `psql` runs `SELECT 1` through its `DATABASE_URL`")}
}
