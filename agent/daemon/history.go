package daemon

import (
	"time"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/history"
	"github.com/coder-slots/coder-slots/agent/relay"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// historySampleEvery is how often the apps' CPU and memory go into the
// history (the supervisor measures them every 2 s).
const historySampleEvery = 2 * time.Second

// observeRequest is a slot's slot.Config.Observe: each response it proxied
// goes to the metrics and to its history.
func observeRequest(m *admin.Metrics, h *history.Slot) func(string, relay.Response) {
	return func(slot string, r relay.Response) {
		m.ObserveRequest(slot, r.Code, r.Took)
		h.Request(r.Code, r.Start, r.Took, r.Local)
	}
}

// History is the slot's history (the admin API's Histories).
func (a *Agent) History(name string) *history.Slot { return a.hist.Slot(name) }

// markDeploy records a deploy or rollback that succeeded in the slot's
// history: what failed changed nothing there.
func (a *Agent) markDeploy(rec deploy.Record) {
	h := a.hist.Slot(rec.Slot)
	if h == nil || rec.Status != deploy.Succeeded {
		return
	}
	kind := history.Deploy
	if rec.Trigger == deploy.TriggerRollback {
		kind = history.Rollback
	}
	h.Mark(kind, rec.ID, string(rec.Trigger), 0)
}

// sampleHistory records every running app's CPU and memory, and its
// crashes (an exit it was not asked for), until the agent stops.
func (a *Agent) sampleHistory() {
	t := time.NewTicker(historySampleEvery)
	defer t.Stop()
	seen := map[string]time.Time{} // each slot's last exit recorded
	for {
		select {
		case <-t.C:
		case <-a.quit:
			return
		}
		for _, sc := range a.cfg.Slots {
			if st := a.slots[sc.Name].Status(); st.Process != nil {
				a.sampleApp(sc.Name, *st.Process, seen)
			}
		}
	}
}

// sampleApp records one app's figures and its last crash, if new.
func (a *Agent) sampleApp(name string, info supervisor.Info, seen map[string]time.Time) {
	h := a.hist.Slot(name)
	if info.Status == supervisor.Online {
		h.Sample(info.CPU, info.Memory)
	}
	if at := info.ExitedAt; at.After(seen[name]) {
		seen[name] = at
		h.Mark(history.Crash, "", info.LastExit, time.Since(at))
	}
}
