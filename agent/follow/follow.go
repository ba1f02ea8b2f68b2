// Package follow has slots follow a branch: each following slot checks its
// branch's tip with `git ls-remote` at an interval (with jitter) and
// deploys it when it moved, as a deploy of trigger follow. A commit whose
// deploy failed is not retried; a network or auth error backs off
// exponentially and deploys nothing; a manual deploy, rollback, git push
// or stop pauses following until it is resumed. One check per repository
// is in flight at a time, however many slots follow it, and a check never
// holds the slot while it talks to the network. It also takes a free slot
// for a branch's preview.
package follow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/source"
	"github.com/coder-slots/coder-slots/agent/state"
)

// Interval bounds and the default.
const (
	DefaultInterval = 30 * time.Second
	MinInterval     = time.Second
	MaxInterval     = 24 * time.Hour
	// maxBackoff caps the wait after failed checks (unless the interval
	// itself is longer).
	maxBackoff = 10 * time.Minute
)

// Deployer is what the follower needs from the deployer.
type Deployer interface {
	Follow(name string, req deploy.Request, allow func(state.Slot) error) (deploy.Record, error)
	Free(name string) <-chan struct{}
	Get(id string) (deploy.Record, bool)
	List(name string) []deploy.Record
}

// Store is the agent's state as the follower sees it.
type Store interface {
	Slot(name string) state.Slot
	UpdateSlot(name string, change func(*state.Slot)) error
}

// Config configures a Follower.
type Config struct {
	// Env is git's environment (the deploys' own: same credentials path).
	Env []string
	// Stop returns a slot to its placeholder (a preview whose branch was
	// deleted, with ReleaseOnDelete).
	Stop func(name string) error
	Log  *slog.Logger
	// Tracker, when set, is told of the process group of every git
	// ls-remote, as the deploys' commands are (see deploy.Config.Tracker).
	Tracker reaper.Tracker
}

// Follower runs the checks of every following slot.
type Follower struct {
	cfg   Config
	d     Deployer
	store Store
	names []string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	loops   map[string]*loop
	flights map[string]*flight // repository → its check in flight
	// previewMu makes choosing a free slot and taking it one step.
	previewMu sync.Mutex

	requests atomic.Int64 // ls-remote runs, for the benchmark and metrics
}

// loop is one following slot's goroutine and what it last found.
type loop struct {
	kick chan struct{}
	stop chan struct{}

	// guarded by Follower.mu
	status   Status
	failures int
}

// flight is one ls-remote of a repository that several slots wait for.
type flight struct {
	done  chan struct{}
	heads map[string]string
	head  string
	err   error
}

// New returns a follower of the slots names; Start starts it.
func New(cfg Config, d Deployer, store Store, names []string) *Follower {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	f := &Follower{cfg: cfg, d: d, store: store, names: names, loops: map[string]*loop{}, flights: map[string]*flight{}}
	base := context.Background()
	if cfg.Tracker != nil {
		base = reaper.WithTracker(base, cfg.Tracker)
	}
	f.ctx, f.cancel = context.WithCancel(base)
	return f
}

// Start starts the checks of the slots that follow a branch in the saved
// state (their first check after one interval).
func (f *Follower) Start() {
	for _, name := range f.names {
		if fw := f.store.Slot(name).Follow; fw != nil {
			f.startLoop(name, jitter(fw.Interval))
		}
	}
}

// Close stops every check and waits for them (a follow deploy under way
// is the deployer's to cancel).
func (f *Follower) Close() {
	f.cancel()
	f.wg.Wait()
}

// Requests is how many times the follower asked a forge for its branches.
func (f *Follower) Requests() int64 { return f.requests.Load() }

// Settings turn following on (or resume it) for a slot.
type Settings struct {
	// Repo is the repository to follow; empty keeps the one the slot
	// follows, else takes the one its serving release came from.
	Repo string
	// Branch is the branch to follow; empty keeps the one the slot
	// follows, else takes its serving release's ref, else the
	// repository's default branch.
	Branch string
	// Interval between checks; zero keeps the slot's or takes
	// DefaultInterval.
	Interval time.Duration
	// Preview and ReleaseOnDelete: see state.Follow.
	Preview, ReleaseOnDelete bool
}

// ErrInvalid marks settings that were refused, changing nothing.
var ErrInvalid = errors.New("invalid follow settings")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// resolve checks s for slot ss and returns the follow state it makes.
func resolve(name string, ss state.Slot, s Settings) (state.Follow, error) {
	fw := state.Follow{Repo: s.Repo, Branch: s.Branch, Interval: s.Interval, Preview: s.Preview, ReleaseOnDelete: s.ReleaseOnDelete}
	cur, hasCur := ss.Find(ss.Current)
	if old := ss.Follow; old != nil {
		if fw.Repo == "" {
			fw.Repo = old.Repo
			if fw.Branch == "" {
				fw.Branch = old.Branch
			}
		}
		if fw.Interval == 0 {
			fw.Interval = old.Interval
		}
		fw.Preview = fw.Preview || old.Preview
		fw.ReleaseOnDelete = fw.ReleaseOnDelete || old.ReleaseOnDelete
	}
	if fw.Repo == "" {
		switch {
		case !hasCur || cur.Repo == "":
			return fw, invalid("slot %s serves no release from a git repository: deploy one with --repo first, or use slotagent preview REPO BRANCH", name)
		case strings.Contains(cur.Repo, "***"):
			return fw, invalid("slot %s's release came from a repository URL with a token, which is not kept: use slotagent preview REPO BRANCH --slot %s", name, name)
		}
		fw.Repo = cur.Repo
		if fw.Branch == "" && source.ValidateBranch(cur.Ref) == nil {
			fw.Branch = cur.Ref
		}
	}
	if err := source.ValidateRepo(fw.Repo); err != nil {
		return fw, invalid("%v", err)
	}
	if fw.Branch != "" {
		if err := source.ValidateBranch(fw.Branch); err != nil {
			return fw, invalid("%v", err)
		}
	}
	if fw.Interval == 0 {
		fw.Interval = DefaultInterval
	}
	if fw.Interval < MinInterval || fw.Interval > MaxInterval {
		return fw, invalid("interval %s is out of range (%s to %s)", fw.Interval, MinInterval, MaxInterval)
	}
	fw.Since = time.Now().UTC()
	return fw, nil
}

// Set turns following on for the slot, or resumes it (clearing a pause
// and a failed commit), saves it and checks at once.
func (f *Follower) Set(name string, s Settings) (Status, error) {
	if !f.known(name) {
		return Status{}, invalid("unknown slot %q", name)
	}
	fw, err := resolve(name, f.store.Slot(name), s)
	if err != nil {
		return Status{}, err
	}
	if err := f.store.UpdateSlot(name, func(ss *state.Slot) { ss.Follow = &fw }); err != nil {
		return Status{}, fmt.Errorf("save follow settings: %w", err)
	}
	f.mu.Lock()
	if l := f.loops[name]; l != nil {
		l.failures = 0
	}
	f.mu.Unlock()
	f.startLoop(name, 0)
	f.Kick(name)
	return f.Status(name), nil
}

// Off stops following for the slot; what it serves stays.
func (f *Follower) Off(name string) error {
	if !f.known(name) {
		return invalid("unknown slot %q", name)
	}
	if err := f.store.UpdateSlot(name, func(ss *state.Slot) { ss.Follow = nil }); err != nil {
		return fmt.Errorf("save follow settings: %w", err)
	}
	f.mu.Lock()
	if l := f.loops[name]; l != nil {
		close(l.stop)
		delete(f.loops, name)
	}
	f.mu.Unlock()
	return nil
}

// Pause pauses following for the slot, saying why, unless it is paused
// already or does not follow.
func (f *Follower) Pause(name, why string) {
	if f.store.Slot(name).Follow == nil {
		return
	}
	err := f.store.UpdateSlot(name, func(ss *state.Slot) {
		if ss.Follow != nil && ss.Follow.Paused == "" {
			ss.Follow.Paused = why
		}
	})
	if err != nil {
		f.cfg.Log.Error("save follow pause", "slot", name, "err", err)
	}
}

// Kick makes the slot's next check now (POST .../follow/check); false
// when the slot does not follow.
func (f *Follower) Kick(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.loops[name]
	if l == nil {
		return false
	}
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return true
}

func (f *Follower) known(name string) bool {
	for _, n := range f.names {
		if n == name {
			return true
		}
	}
	return false
}

// startLoop starts the slot's checks, the first after delay, unless they
// run.
func (f *Follower) startLoop(name string, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loops[name] != nil || f.ctx.Err() != nil {
		return
	}
	l := &loop{kick: make(chan struct{}, 1), stop: make(chan struct{})}
	f.loops[name] = l
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.kick:
				t.Stop()
			case <-l.stop:
				t.Stop()
				return
			case <-f.ctx.Done():
				t.Stop()
				return
			}
			delay = f.check(name, l)
		}
	}()
}

// jitter spreads checks of many slots: d ± 10 %.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// backoff is the wait after n failed checks in a row: the interval
// doubled n-1 times, capped at maxBackoff (or the interval when longer).
func backoff(interval time.Duration, n int) time.Duration {
	limit := max(maxBackoff, interval)
	d := interval
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}
