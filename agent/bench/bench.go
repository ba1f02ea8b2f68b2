// Package bench measures slotagent's speed and memory and prints a markdown
// table: idle memory, status query latency, crash → slot answering again
// (against a bare Node.js boot), cold start, and re-deploys of a small npm
// app from a local git repository, with a client checking that no request
// fails during them and during a rollback. It runs the real binary on
// free loopback ports, kills every process it starts, and bounds every loop
// in count and time.
//
// The table has one column group per stack measured (Report.Stacks):
// slotagent, and the PM2 setup it replaces (a PM2 daemon running an admin
// Node server and five placeholder Node servers from an ecosystem file, PM2
// installed from the npm registry into .cache/pm2), with the ratio of the
// medians, and the proxy's overhead under load (beside a plain TCP splice
// proxy in its own process, the floor of any proxy between two processes).
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// Ours is the stack name of slotagent's column.
const Ours = "slotagent"

// Options configure a run.
type Options struct {
	// Quick runs fewer iterations (well under a minute).
	Quick bool
	// Binary is a slotagent binary to measure; empty builds one from the
	// module (./agent/cmd/slotagent) into a temporary directory.
	Binary string
	// Command is how the run was invoked, printed so it can be reproduced.
	Command string
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// NoPM2 measures slotagent alone: no PM2 install, no PM2 column.
	NoPM2 bool
	// Only, when not empty, runs just the measurements it names (see
	// Measurements); the PM2 column still runs unless NoPM2.
	Only []string
	// SpliceProxy starts the reference proxy of the proxy rows (a plain
	// TCP splice, see ServeSplice) when given the target address as one
	// more argument; empty leaves those rows out.
	SpliceProxy []string
}

// Report is the outcome of a run.
type Report struct {
	// Machine is where it ran.
	Machine Machine
	// Command reproduces the run.
	Command string
	// Quick tells a short run.
	Quick bool
	// Stacks are the stacks measured, in column order; targets are judged
	// against the first.
	Stacks []string
	// Rows are the figures, in table order.
	Rows []Row
}

// Failed reports whether a figure could not be measured (a missed target
// is a result, not a failure).
func (r *Report) Failed() bool {
	for _, row := range r.Rows {
		if row.Err != nil {
			return true
		}
	}
	return false
}

// counts are the iterations of each measurement.
type counts struct {
	idleRuns    int // fresh agents whose idle RSS is read
	apiWarmup   int // GET /api/processes before timing
	apiRequests int // timed GET /api/processes
	cliRuns     int // slotagent status --json
	crashRuns   int // kill -9 → answering, and as many bare node boots
	coldRuns    int // slotagent run → six ports answering
	redeploys   int // timed re-deploys of the sample npm app (and follow pushes)
	// followWindow is each idle window of the follow measurement.
	followWindow time.Duration
	// loadDuration is each run of the load generator (proxy overhead).
	loadDuration time.Duration
}

func countsFor(quick bool) counts {
	if quick {
		return counts{idleRuns: 2, apiWarmup: 100, apiRequests: 1000, cliRuns: 10, crashRuns: 8, coldRuns: 4, redeploys: 2, loadDuration: 5 * time.Second, followWindow: time.Minute}
	}
	return counts{idleRuns: 5, apiWarmup: 200, apiRequests: 2000, cliRuns: 30, crashRuns: 40, coldRuns: 10, redeploys: 5, loadDuration: 10 * time.Second, followWindow: 3 * time.Minute}
}

// bench is the state of one run shared by the measurements.
type bench struct {
	bin  string // the slotagent binary
	root string // temporary directory holding everything the run writes
	// modDir is the module's source tree (sample app files), modErr why
	// it could not be found.
	modDir string
	modErr error
	n      counts
	log    io.Writer
	// splice starts the reference proxy (Options.SpliceProxy).
	splice []string
	// pm2 is the installed PM2, pm2Err why it is not there.
	pm2    pm2Install
	pm2Err error
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "slotbench: "+format+"\n", args...)
}

// Run builds slotagent (unless Options.Binary is set), measures every
// figure and returns the report. A figure that cannot be measured becomes a
// row carrying its error; Run itself fails only when nothing can be
// measured (no binary, no temporary directory) or ctx is cancelled.
func Run(ctx context.Context, opts Options) (*Report, error) {
	for _, name := range opts.Only {
		if !slices.Contains(Measurements(), name) {
			return nil, fmt.Errorf("unknown measurement %q (one of %s)", name, strings.Join(Measurements(), ", "))
		}
	}
	b := &bench{n: countsFor(opts.Quick), log: opts.Log, splice: opts.SpliceProxy}
	if b.log == nil {
		b.log = io.Discard
	}
	root, err := os.MkdirTemp("", "slotbench-")
	if err != nil {
		return nil, fmt.Errorf("create a temporary directory: %w", err)
	}
	defer os.RemoveAll(root)
	b.root = root

	b.modDir, b.modErr = moduleDir(ctx)
	b.bin = opts.Binary
	if b.bin == "" {
		if b.modErr != nil {
			return nil, fmt.Errorf("%w (or pass -slotagent)", b.modErr)
		}
		b.logf("building slotagent")
		if b.bin, err = buildAgent(ctx, b.modDir, root); err != nil {
			return nil, err
		}
	}
	r := &Report{
		Machine: probeMachine(ctx, b.bin),
		Command: opts.Command,
		Quick:   opts.Quick,
		Stacks:  []string{Ours},
	}
	if !opts.NoPM2 {
		r.Stacks = append(r.Stacks, PM2)
		b.pm2Err = b.modErr
		if b.pm2Err == nil {
			b.logf("installing PM2 (%s) into %s unless it is there", pm2Spec, pm2CacheDir)
			b.pm2, b.pm2Err = ensurePM2(ctx, b.modDir)
		}
		r.Machine.PM2Version = "not installed"
		if b.pm2Err == nil {
			r.Machine.PM2Version = b.pm2.version
		}
	}
	for _, m := range b.measurements() {
		if len(opts.Only) > 0 && !slices.Contains(opts.Only, m.name) {
			continue
		}
		r.Rows = append(r.Rows, m.run(ctx)...)
		if err := ctx.Err(); err != nil {
			return r, fmt.Errorf("benchmark interrupted: %w", err)
		}
	}
	if !opts.NoPM2 {
		cells, failures := b.oldStack(ctx)
		r.Rows = append(merge(r.Rows, PM2, cells), failures...)
		if err := ctx.Err(); err != nil {
			return r, fmt.Errorf("benchmark interrupted: %w", err)
		}
	}
	r.Machine.LoadAfter = loadAverage()
	return r, nil
}

// measurement is one group of rows, named for Options.Only.
type measurement struct {
	name string
	run  func(context.Context) []Row
}

// measurements are the groups of rows, in table order.
func (b *bench) measurements() []measurement {
	return []measurement{{"idle", b.idle}, {"busy", b.busy}, {"crash", b.crash}, {"cold-start", b.coldStart},
		{"cold-start-postgres", b.coldStartPostgres}, {"rehydrate", b.rehydrate}, {"rehydrate-postgres", b.rehydratePostgres},
		{"redeploy", b.redeploy}, {"languages", b.languages}, {"git-push", b.gitPush}, {"follow", b.follow}, {"proxy", b.proxy}}
}

// Measurements names the groups of rows Options.Only chooses from.
func Measurements() []string {
	var names []string
	for _, m := range (&bench{}).measurements() {
		names = append(names, m.name)
	}
	return names
}

// ours is a row measured on slotagent.
func ours(figure, unit string, st Stat, target *Target, note string) Row {
	return Row{Figure: figure, Unit: unit, Cells: map[string]Stat{Ours: st}, Target: target, Note: note}
}

// failed is a row for a figure that could not be measured.
func failed(figure string, target *Target, err error) Row {
	return Row{Figure: figure, Target: target, Err: err}
}

// stop stops an agent, logging what went wrong.
func (b *bench) stop(a *agentProc) {
	if err := a.stop(); err != nil {
		b.logf("%v", err)
	}
}
