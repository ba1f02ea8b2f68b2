package daemon

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/follow"
	"github.com/coder-slots/coder-slots/agent/gitpush"
	"github.com/coder-slots/coder-slots/agent/history"
	"github.com/coder-slots/coder-slots/agent/logs"
	"github.com/coder-slots/coder-slots/agent/postgres"
	"github.com/coder-slots/coder-slots/agent/slot"
	"github.com/coder-slots/coder-slots/agent/state"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// The agent is the admin API's backend.
var _ admin.Backend = (*Agent)(nil)

// About describes the running agent.
func (a *Agent) About() admin.About {
	warnings := a.startWarnings()
	status := "ok"
	if len(warnings) > 0 {
		status = "degraded"
	}
	return admin.About{
		Status:    status,
		Version:   a.version,
		Role:      a.cfg.Role,
		Instance:  a.cfg.Instance,
		PID:       os.Getpid(),
		StartedAt: a.started,
		Bind:      a.cfg.Bind,
		AdminPort: a.cfg.AdminPort,
		DataDir:   a.cfg.DataDir,
		LogDir:    a.cfg.LogDir(),
		StatePath: a.cfg.StatePath(),
		Warnings:  warnings,
	}
}

// startWarnings are the problems found at start: the agent's own and
// PostgreSQL's, whose set-up goes on after the start.
func (a *Agent) startWarnings() []string {
	if p := a.pg.Problem(); p != "" {
		return append(slices.Clip(a.warnings), p)
	}
	return a.warnings
}

// Slots describes the slots, a to e.
func (a *Agent) Slots() []slot.Status {
	out := make([]slot.Status, 0, len(a.cfg.Slots))
	for _, sc := range a.cfg.Slots {
		out = append(out, a.slots[sc.Name].Status())
	}
	return out
}

// Processes are the supervised processes that are not slot apps.
func (a *Agent) Processes() []supervisor.Info {
	var out []supervisor.Info
	if p, ok := a.sup.Get(CoderAgentName); ok {
		out = append(out, p.Info())
	}
	if p, ok := a.sup.Get(postgres.ProcessName); ok {
		out = append(out, a.pg.ProcessInfo(p.Info()))
	}
	return out
}

// SlotHealth reports whether the slot serves (see slot.Slot.Serving).
func (a *Agent) SlotHealth(ctx context.Context, name string) (bool, string) {
	return a.slots[name].Serving(ctx)
}

// StopSlot stops the slot's app and serves the placeholder; the release is
// kept so that a restart brings it back. The slot is reserved meanwhile: no
// deploy can start during the stop.
// A slot that follows a branch stops following (the user took control).
func (a *Agent) StopSlot(name string) error {
	err := a.deployer.Exclusive(name, "stop", func() error {
		// Saved first: an agent killed while the app stops (which may
		// take kill_timeout) must not bring it back at its next start.
		if err := a.UpdateSlot(name, func(ss *state.Slot) { ss.Desired = state.DesiredPlaceholder }); err != nil {
			return err
		}
		a.slots[name].Stop(0)
		a.hist.Slot(name).Mark(history.Stop, "", "", 0)
		return nil
	})
	if err == nil {
		a.follower.Pause(name, "paused: the slot was stopped (resume with slotagent follow "+name+")")
	}
	return err
}

// Follower has slots follow their branch.
func (a *Agent) Follower() *follow.Follower { return a.follower }

// RestartSlot restarts the slot's app, or starts its current release again
// after a stop; an empty slot has nothing to restart. The slot is reserved
// meanwhile.
func (a *Agent) RestartSlot(name string) (msg string, err error) {
	err = a.deployer.Exclusive(name, "restart", func() error {
		msg, err = a.restartSlot(name)
		return err
	})
	return msg, err
}

func (a *Agent) restartSlot(name string) (string, error) {
	s := a.slots[name]
	if s.Restart() {
		a.hist.Slot(name).Mark(history.Restart, "", "", 0)
		return "slot " + name + " restarted", nil
	}
	ss := a.Slot(name)
	rel, ok := ss.Find(ss.Current)
	if !ok {
		return "slot " + name + " serves its placeholder: nothing to restart", nil
	}
	env := ss.Env
	if err := s.Run(toSlotRelease(rel, env)); err != nil {
		s.SetError(fmt.Sprintf("release %s could not be started: %v", rel.ID, err))
		return "", fmt.Errorf("start release %s: %w", rel.ID, err)
	}
	a.hist.Slot(name).Mark(history.Start, "", "release "+rel.ID, 0)
	if err := a.UpdateSlot(name, func(ss *state.Slot) { ss.Desired = state.DesiredRunning }); err != nil {
		return "", err
	}
	return "slot " + name + " started release " + rel.ID, nil
}

// Slot returns a copy of a slot's saved state.
func (a *Agent) Slot(name string) state.Slot {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	if ss := a.st.Clone().Slots[name]; ss != nil {
		return *ss
	}
	return state.Slot{}
}

// KeptReleases lists the releases the saved state keeps, of every slot.
func (a *Agent) KeptReleases() []state.Release {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	return a.st.Clone().KeptReleases()
}

// UpdateSlot changes one slot's state and saves it. The change is made on
// a copy, validated and saved before it replaces the state in memory, so a
// refused or failed save changes nothing.
func (a *Agent) UpdateSlot(name string, change func(*state.Slot)) error {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	next := a.st.Clone()
	ss := next.Slots[name]
	if ss == nil {
		ss = &state.Slot{Desired: state.DesiredPlaceholder}
		next.Slots[name] = ss
	}
	change(ss)
	if err := state.Validate(next); err != nil {
		return fmt.Errorf("refused state change: %w", err)
	}
	if err := a.saveLocked(next); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	a.st = next
	return nil
}

// Logs returns the log files of a slot (by letter) or of a process.
func (a *Agent) Logs(name string) (*logs.Sink, error) {
	if _, ok := a.slots[name]; ok {
		name = slot.ProcessName(name)
	}
	return a.sup.Logs(name)
}

// Specs are the specs of every supervised process.
func (a *Agent) Specs() []supervisor.Spec {
	procs := a.sup.List()
	out := make([]supervisor.Spec, 0, len(procs))
	for _, p := range procs {
		out = append(out, p.Spec())
	}
	return out
}

// GitRemote makes the slot's git repository when it is missing (its hook
// is this binary) and says how to push to it.
func (a *Agent) GitRemote(name string) (gitpush.Remote, error) {
	exe, err := os.Executable()
	if err != nil {
		return gitpush.Remote{}, fmt.Errorf("find the slotagent binary for the git hook: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	repo, err := gitpush.Ensure(ctx, a.cfg.DataDir, name, exe)
	if err != nil {
		return gitpush.Remote{}, err
	}
	home, _ := os.UserHomeDir()
	return gitpush.Describe(repo, name, home, os.Getenv("CODER_WORKSPACE_NAME"))
}

// Push starts the deploy of a commit pushed to the slot's git repository.
func (a *Agent) Push(name string, p deploy.Push) (deploy.Record, error) {
	return a.deployer.Push(name, p)
}

// PushWaiting is closed once a push's deploy waits for git.
func (a *Agent) PushWaiting(id string) <-chan struct{} { return a.deployer.PushWaiting(id) }

// RefUpdate hands a reference-transaction report to the push's deploy.
func (a *Agent) RefUpdate(name string, ev deploy.RefEvent) (string, error) {
	return a.deployer.RefUpdate(name, ev)
}
