// Package deploy turns a git repository or a folder into a release of a
// slot and cuts over to it without downtime: fetch, install, build, start
// beside the serving release, health-check, swap, drain, stop the old one.
// Any failure leaves the previous release serving. It also rolls back to a
// kept release, makes env changes releases of their own, keeps a record and
// a log of every deploy, and prunes old releases.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/coder-slots/coder-slots/agent/logs"
	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/slot"
	"github.com/coder-slots/coder-slots/agent/state"
)

// Store is the agent's state as the deployer sees it.
type Store interface {
	// Slot returns a copy of a slot's state (zero value when it has none).
	Slot(name string) state.Slot
	// UpdateSlot changes a slot's state and saves the state file.
	UpdateSlot(name string, change func(*state.Slot)) error
	// KeptReleases lists the releases the state keeps, of every slot.
	KeptReleases() []state.Release
}

// Config configures the deployer.
type Config struct {
	// DataDir holds slots/<x>/releases, slots/<x>/cache.git, deploys/<x>,
	// the shared package manager cache and the push repositories
	// git/<x>.git.
	DataDir string
	// Env is the environment of git and the package managers.
	Env []string
	// Health configures the health gate.
	Health HealthConfig
	// Drain bounds how long the old release keeps its in-flight requests.
	Drain time.Duration
	// KeepReleases is how many releases of a slot stay on disk.
	KeepReleases int
	// KeepRecords is how many deploy records a slot keeps.
	KeepRecords int
	// Timeout bounds a whole deploy (a git prompt or a hung install must
	// not hold the slot's lock forever).
	Timeout time.Duration
	// Tracker, when set, is told of the process group of every command a
	// deploy runs (git, the package manager, the build), so that the agent
	// can record them and a later agent kill what a dead one left running.
	Tracker reaper.Tracker
	// OnFinish, when set, is given the final record of every deploy that
	// ends (not of those a dead agent left running).
	OnFinish func(Record)
}

// DefaultConfig has the defaults of DESIGN.md: drain 30 s, 3 releases, 20
// records; a deploy may take 30 minutes.
func DefaultConfig(dataDir string) Config {
	return Config{
		DataDir:      dataDir,
		Env:          os.Environ(),
		Health:       DefaultHealth(),
		Drain:        30 * time.Second,
		KeepReleases: 3,
		KeepRecords:  20,
		Timeout:      30 * time.Minute,
	}
}

// ErrBusy is returned when a deploy already runs on the slot.
type ErrBusy struct{ Running string }

func (e ErrBusy) Error() string { return "a deploy is already running on this slot: " + e.Running }

// Deployer runs deploys, one at a time per slot.
type Deployer struct {
	cfg     Config
	slots   func(string) *slot.Slot
	store   Store
	log     *slog.Logger
	records *records

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	running map[string]string        // slot → running deploy id
	free    map[string]chan struct{} // slot → closed when its reservation ends
	sinks   map[string]*logs.Sink
	pushes  map[string]*pendingPush // slot → its push deploy under way
	closed  bool
}

// New returns a deployer. Records left running by a dead agent become
// abandoned, and the pushes it left pending are settled (see
// settlePushes). With cleanStray, release folders the state does not know
// (half-made by a deploy that died) are removed; an agent whose state file
// was unusable passes false, so nothing the old state knew is lost.
func New(cfg Config, slots func(string) *slot.Slot, store Store, names []string, cleanStray bool, log *slog.Logger) (*Deployer, error) {
	recs, err := loadRecords(filepath.Join(cfg.DataDir, "deploys"), cfg.KeepRecords)
	if err != nil {
		return nil, err
	}
	d := &Deployer{cfg: cfg, slots: slots, store: store, log: log, records: recs,
		running: map[string]string{}, free: map[string]chan struct{}{}, sinks: map[string]*logs.Sink{}, pushes: map[string]*pendingPush{}}
	base := context.Background()
	if cfg.Tracker != nil {
		base = reaper.WithTracker(base, cfg.Tracker)
	}
	d.ctx, d.cancel = context.WithCancel(base)
	d.settlePushes(names)
	if cleanStray {
		for _, name := range names {
			d.removeStrayReleases(name)
		}
		d.pruneCache()
	}
	return d, nil
}

// Close refuses new deploys, cancels the running ones and waits for them
// to end, at most until timeout.
func (d *Deployer) Close(timeout time.Duration) {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		d.log.Warn("deploys did not end in time", "timeout", timeout)
	}
}

// holder returns what holds the slot (a deploy's id, or what an Exclusive
// call runs), if anything.
func (d *Deployer) holder(name string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, ok := d.running[name]
	return id, ok
}

func (d *Deployer) releasesDir(name string) string {
	return filepath.Join(d.cfg.DataDir, "slots", name, "releases")
}

// removeStrayReleases deletes release folders no release of the state uses
// (matched by folder name, whatever the spelling of the data dir).
func (d *Deployer) removeStrayReleases(name string) {
	known := map[string]bool{}
	for _, r := range d.store.Slot(name).Releases {
		known[filepath.Base(r.Dir)] = true
	}
	entries, _ := os.ReadDir(d.releasesDir(name))
	for _, e := range entries {
		dir := filepath.Join(d.releasesDir(name), e.Name())
		if !known[e.Name()] {
			d.log.Warn("removing a release a dead deploy left half-made", "slot", name, "dir", dir)
			_ = os.RemoveAll(dir)
		}
	}
}

// Get returns the record of a deploy.
func (d *Deployer) Get(id string) (Record, bool) { return d.records.get(id) }

// List returns a slot's deploy records, newest first.
func (d *Deployer) List(name string) []Record { return d.records.list(name) }

// Logs returns the log of a deploy: lines so far, and, while it runs, a
// channel of the next ones (nil when it has ended) with its cancel func.
func (d *Deployer) Logs(id string) ([]string, <-chan string, func(), error) {
	rec, ok := d.records.get(id)
	if !ok {
		return nil, nil, nil, fmt.Errorf("unknown deploy %q", id)
	}
	d.mu.Lock()
	sink := d.sinks[id]
	d.mu.Unlock()
	if sink != nil {
		lines, next, cancel, err := sink.Follow(1 << 20)
		if err == nil {
			return lines, next, cancel, nil
		}
	}
	b, err := os.ReadFile(rec.Log)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read deploy log: %w", err)
	}
	return splitLines(string(b)), nil, func() {}, nil
}

// job is one deploy under way.
type job struct {
	d      *Deployer
	rec    *Record
	sink   *logs.Sink
	out    io.Writer
	errOut io.Writer
	slot   *slot.Slot
}

// errShutdown refuses work once Close has begun.
var errShutdown = errors.New("the agent is shutting down")

// reserve takes the slot for one job (a deploy, or a function run by
// Exclusive) named id, or reports the one that holds it. Close waits for
// every reservation to be released.
func (d *Deployer) reserve(name, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errShutdown
	}
	if running, ok := d.running[name]; ok {
		return ErrBusy{Running: running}
	}
	d.running[name] = id
	d.free[name] = make(chan struct{})
	d.wg.Add(1)
	return nil
}

// release gives the slot back.
func (d *Deployer) release(name string) {
	d.mu.Lock()
	delete(d.running, name)
	close(d.free[name])
	delete(d.free, name)
	d.mu.Unlock()
	d.wg.Done()
}

// closedChan is what Free returns for a slot nothing holds.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Free returns a channel that is closed once nothing holds the slot: at
// once when nothing does, else when what holds it now (a deploy, with its
// record final, or an Exclusive call) has ended. Something else may take
// the slot right after.
func (d *Deployer) Free(name string) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.free[name]; ok {
		return c
	}
	return closedChan
}

// Exclusive runs f while nothing else changes the slot: no deploy,
// rollback, env change or other Exclusive call runs on it meanwhile, and
// none can start until f returns. It returns ErrBusy, without running f,
// when one already runs; what names f in that error.
func (d *Deployer) Exclusive(name, what string, f func() error) error {
	if err := d.reserve(name, what); err != nil {
		return err
	}
	defer d.release(name)
	return f()
}

// begin reserves the slot, then has plan decide, on the slot's state read
// under the reservation, whether a job runs: plan fills the job's record,
// or refuses with an error, or does the work itself and returns false
// (begin then returns a nil job). The caller runs the job with run.
func (d *Deployer) begin(name string, trig Trigger, plan func(ss state.Slot, rec *Record) (bool, error)) (*job, error) {
	s := d.slots(name)
	if s == nil {
		return nil, invalid("unknown slot %q", name)
	}
	now := time.Now().UTC()
	id := name + "-" + stamp(now)
	if err := d.reserve(name, id); err != nil {
		return nil, err
	}
	rec := &Record{ID: id, Slot: name, Trigger: trig, Status: Running, CreatedAt: now, Stages: []Stage{}}
	ss := d.store.Slot(name)
	if cur, ok := ss.Find(ss.Current); ok && ss.Desired == state.DesiredRunning {
		rec.Previous = cur.Commit
	}
	run, err := plan(ss, rec)
	if err != nil || !run {
		d.release(name)
		return nil, err
	}
	sink, err := logs.Open(d.records.slotDir(name), id, logs.Options{NoRotate: true})
	if err == nil {
		_, _, rec.Log = sink.Paths()
		if err = d.records.add(rec); err != nil {
			_ = sink.Close()
			d.records.remove(rec)
		}
	}
	if err != nil {
		d.release(name)
		return nil, fmt.Errorf("start deploy record: %w", err)
	}
	d.mu.Lock()
	d.sinks[id] = sink
	d.mu.Unlock()
	return &job{d: d, rec: rec, sink: sink, out: sink.Writer(logs.Stdout), errOut: sink.Writer(logs.Stderr), slot: s}, nil
}

// stamp is a sortable, millisecond-precise time for ids.
func stamp(t time.Time) string {
	return t.Format("20060102T150405") + fmt.Sprintf("%03d", t.Nanosecond()/1e6)
}

// run executes steps in the background, finishes the record and releases
// the slot.
func (j *job) run(steps func(ctx context.Context) error) {
	go func() {
		ctx, cancel := context.WithTimeout(j.d.ctx, j.d.cfg.Timeout)
		err := steps(ctx)
		cancel()
		status := Succeeded
		switch {
		case errors.Is(err, context.Canceled):
			status = Canceled
		case errors.Is(err, context.DeadlineExceeded):
			status, err = Failed, fmt.Errorf("the deploy took longer than %s: %w", j.d.cfg.Timeout, err)
		case err != nil:
			status = Failed
		}
		msg := ""
		if err != nil {
			// Every way a deploy's failure is told (its record on disk
			// and in the API, the slot's page, git push, deploy --wait,
			// the agent's log) starts here: it quotes git's, the build's
			// and the app's output, so it is masked as the deploy log is.
			msg = j.sink.Mask(err.Error())
			j.logf("deploy %s: %s", status, msg)
		} else {
			j.logf("deploy succeeded: slot %s serves release %s", j.rec.Slot, j.rec.Release)
		}
		var final Record
		if uerr := j.d.records.update(j.rec, func(r *Record) {
			r.Status, r.Error, r.FinishedAt = status, msg, time.Now().UTC()
			final = *r
		}); uerr != nil {
			j.d.log.Error("save deploy record", "deploy", j.rec.ID, "err", uerr)
		}
		j.d.log.Info("deploy finished", "deploy", j.rec.ID, "status", status, "err", msg)
		if j.d.cfg.OnFinish != nil {
			j.d.cfg.OnFinish(final)
		}
		j.d.mu.Lock()
		delete(j.d.sinks, j.rec.ID)
		j.d.mu.Unlock()
		_ = j.sink.Close()
		j.d.release(j.rec.Slot)
	}()
}

func (j *job) logf(format string, args ...any) {
	fmt.Fprintf(j.out, format+"\n", args...)
}

// updateRecord changes the job's record and writes it; a write that fails
// is logged (the record in memory holds the change, and the final write
// tries again).
func (j *job) updateRecord(change func(*Record)) {
	if err := j.d.records.update(j.rec, change); err != nil {
		j.d.log.Error("save deploy record", "deploy", j.rec.ID, "err", err)
	}
}

// stage runs one timed step and records its duration.
func (j *job) stage(name string, f func() error) error {
	j.logf("==> %s", name)
	start := time.Now()
	err := f()
	j.updateRecord(func(r *Record) {
		r.Stages = append(r.Stages, Stage{Name: name, StartedAt: start.UTC(), DurationMS: time.Since(start).Milliseconds()})
	})
	return err
}

// cutover starts rel beside the serving release, gates it on health,
// swaps, saves it as the slot's current release, then drains and stops the
// previous app. On any failure, a failed save included, the candidate is
// discarded and the previous app serves on; promoted tells whether rel
// serves and is saved (its folder must be kept).
func (j *job) cutover(ctx context.Context, rel state.Release, isNew bool) (promoted bool, err error) {
	cand, err := j.launch(ctx, rel)
	if err != nil {
		return false, err
	}
	var sw *switched
	err = j.stage("cutover", func() error {
		var err error
		if sw, err = j.switchTo(ctx, rel, cand, isNew, nil); err == nil {
			sw.finish(ctx)
		}
		return err
	})
	return sw != nil, err
}

// launch starts rel beside the serving release and gates it on health;
// on failure the candidate is gone.
func (j *job) launch(ctx context.Context, rel state.Release) (*slot.Candidate, error) {
	var cand *slot.Candidate
	started := time.Now()
	err := j.stage("start", func() error {
		var err error
		cand, err = j.slot.Launch(slot.Release{ID: rel.ID, Dir: rel.Dir, Command: rel.Command, Env: rel.Env, Path: rel.Path, Static: rel.Static, SPA: rel.SPA, Language: rel.Language, Plan: rel.Plan})
		switch {
		case err == nil && rel.Static != "":
			j.logf("serving the static site %s on PORT=%d", rel.Static, cand.Port())
		case err == nil:
			j.logf("started %q on PORT=%d", rel.Command, cand.Port())
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	err = j.stage("health", func() error { return gate(ctx, cand, j.d.cfg.Health, false, j.out) })
	if err != nil {
		tail := appTail(j.d, j.rec.Slot, started)
		j.slot.Discard(cand, candidateGrace)
		if tail != "" {
			return nil, fmt.Errorf("%w\nlast lines of the app's log:\n%s", err, tail)
		}
		return nil, err
	}
	return cand, nil
}

// switched is a candidate that serves the slot and is saved as its
// current release, while the previous app still runs, without traffic.
type switched struct {
	j       *job
	cand    *slot.Candidate
	prev    *slot.Previous
	before  state.Slot // the slot's state before the switch (for undo)
	drop    []string   // folders of the releases pruned by the switch
	pending bool       // saved with a state.PendingPush, until confirm
}

// switchTo sends the slot's traffic to cand and saves rel as the slot's
// current release. On failure cand is gone and the previous app serves.
// With push set (a git push whose branch git has yet to move) the state
// saves it as the slot's pending push, completed with what served before,
// and nothing is pruned until confirm.
func (j *job) switchTo(ctx context.Context, rel state.Release, cand *slot.Candidate, isNew bool, push *state.PendingPush) (*switched, error) {
	err := ctx.Err()
	if err == nil && isNew {
		err = syncTree(rel.Dir)
	}
	if err != nil {
		j.slot.Discard(cand, candidateGrace)
		return nil, err
	}
	sw := &switched{j: j, cand: cand, prev: j.slot.Swap(cand), pending: push != nil}
	err = j.d.store.UpdateSlot(j.rec.Slot, func(ss *state.Slot) {
		if push != nil {
			p := *push
			p.Desired, p.Current, p.Env = ss.Desired, ss.Current, ss.Env
			ss.Push = &p
		}
		ss.Previous = previousOf(*ss, rel.ID)
		ss.Desired, ss.Current, ss.Env = state.DesiredRunning, rel.ID, rel.Env
		if isNew {
			ss.Releases = append(ss.Releases, rel)
		}
		if push == nil {
			ss.Releases, sw.drop = j.d.prune(ss.Releases, rel.ID)
		}
	})
	if err != nil {
		// What serves must match the saved state, or the next boot
		// brings back the other release: give the traffic back.
		if sw.prev.Revert(cand, candidateGrace) {
			j.logf("the state could not be saved: the previous app serves again")
		}
		return nil, err
	}
	j.updateRecord(func(r *Record) { r.Release = rel.ID })
	return sw, nil
}

// confirm saves a pending push's switch as final (the pending push goes,
// the releases beyond those kept are pruned); it does nothing for a
// switch that was not pending.
func (sw *switched) confirm() error {
	if !sw.pending {
		return nil
	}
	return sw.j.d.store.UpdateSlot(sw.j.rec.Slot, func(ss *state.Slot) {
		ss.Push = nil
		ss.Releases, sw.drop = sw.j.d.prune(ss.Releases, ss.Current)
	})
}

// finish drains and stops the previous app and removes the pruned
// releases: the switch is final.
func (sw *switched) finish(ctx context.Context) {
	sw.prev.Finish(ctx, sw.j.d.cfg.Drain)
	removeAll(sw.drop)
	sw.j.d.pruneCache()
}

// undo gives the traffic back to the previous app and saves the slot's
// state as it was before the switch.
func (sw *switched) undo() error {
	j := sw.j
	sw.prev.Revert(sw.cand, candidateGrace)
	b := sw.before
	err := j.d.store.UpdateSlot(j.rec.Slot, func(ss *state.Slot) {
		ss.Desired, ss.Current, ss.Previous, ss.Env, ss.Releases, ss.Push = b.Desired, b.Current, b.Previous, b.Env, b.Releases, b.Push
	})
	j.updateRecord(func(r *Record) { r.Release = "" })
	return err
}

// syncTree makes the files of a release durable before a saved state
// names it: after a power loss the state must not point at a folder whose
// files never reached the disk. It syncs the folder's whole file system.
func syncTree(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync release: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync release %s: %w", dir, err)
	}
	return nil
}

// Rehydrate serves rel in the slot at once (its port answers 503 "starting"
// until the app listens) and health-checks it in the background, leniently:
// a release that does not come up is stopped and the slot falls back to its
// placeholder, showing why.
func (d *Deployer) Rehydrate(name string, rel slot.Release) error {
	s := d.slots(name)
	if s == nil {
		return fmt.Errorf("unknown slot %q", name)
	}
	c, err := s.Launch(rel)
	if err != nil {
		return err
	}
	s.Promote(d.ctx, c, 0)
	d.mu.Lock()
	closed := d.closed
	if !closed {
		d.wg.Add(1)
	}
	d.mu.Unlock()
	if closed {
		return nil
	}
	go func() {
		defer d.wg.Done()
		err := gate(d.ctx, c, d.cfg.Health, true, io.Discard)
		if err == nil || d.ctx.Err() != nil {
			return
		}
		msg := fmt.Sprintf("release %s could not be started: %v", rel.ID, err)
		if s.Retire(c, msg) {
			d.log.Error("a rehydrated release did not come up; the slot serves its placeholder", "slot", name, "release", rel.ID, "err", err)
		}
	}()
	return nil
}

// RehydrateAfter is Rehydrate once ready returns, in the background (the
// release needs something that is still starting, such as its database).
// Meanwhile the slot is reserved, so a deploy, stop or restart is refused
// as busy, and it shows waiting. When ready fails the release starts
// anyway and the slot shows why.
func (d *Deployer) RehydrateAfter(name string, rel slot.Release, waiting string, ready func(context.Context) error) error {
	s := d.slots(name)
	if s == nil {
		return fmt.Errorf("unknown slot %q", name)
	}
	if err := d.reserve(name, "rehydrate of "+rel.ID); err != nil {
		return err
	}
	s.Await(slot.Awaited{Release: rel.ID, Reason: waiting})
	go func() {
		defer d.release(name)
		err := ready(d.ctx)
		if d.ctx.Err() != nil {
			return
		}
		if rerr := d.Rehydrate(name, rel); rerr != nil {
			d.log.Error("cannot bring back the app", "slot", name, "release", rel.ID, "err", rerr)
			s.SetError(fmt.Sprintf("release %s could not be started: %v", rel.ID, rerr))
			return
		}
		if err != nil {
			d.log.Warn("a rehydrated release started without what it waited for", "slot", name, "release", rel.ID, "err", err)
			s.SetError(fmt.Sprintf("release %s started although what it needs is not ready: %v", rel.ID, err))
		}
	}()
	return nil
}

// candidateGrace bounds the stop of a release that never got traffic.
const candidateGrace = 2 * time.Second

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}
