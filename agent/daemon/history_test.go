package daemon

import (
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/history"
	"github.com/coder-slots/coder-slots/agent/relay"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// TestHistoryHooks: a proxied response reaches the slot's history, a
// succeeded deploy and rollback are marked (a failed one is not), and a
// crash is marked once, when the supervisor reports a new exit.
func TestHistoryHooks(t *testing.T) {
	a := &Agent{hist: history.New([]string{"a"})}
	observe := observeRequest(admin.NewMetrics(), a.hist.Slot("a"))
	observe("a", relay.Response{Code: 500, Start: time.Now(), Took: time.Millisecond})
	observe("a", relay.Response{Code: 503, Start: time.Now(), Local: true})

	a.markDeploy(deploy.Record{ID: "d1", Slot: "a", Trigger: deploy.TriggerDeploy, Status: deploy.Succeeded})
	a.markDeploy(deploy.Record{ID: "d2", Slot: "a", Trigger: deploy.TriggerDeploy, Status: deploy.Failed})
	a.markDeploy(deploy.Record{ID: "d3", Slot: "a", Trigger: deploy.TriggerRollback, Status: deploy.Succeeded})
	a.markDeploy(deploy.Record{ID: "d4", Slot: "z", Trigger: deploy.TriggerDeploy, Status: deploy.Succeeded})

	seen := map[string]time.Time{}
	crashed := supervisor.Info{Status: supervisor.Online, CPU: 5, Memory: 10 << 20, LastExit: "exit code 1", ExitedAt: time.Now()}
	a.sampleApp("a", supervisor.Info{Status: supervisor.Online, CPU: 5, Memory: 10 << 20}, seen)
	a.sampleApp("a", crashed, seen)
	a.sampleApp("a", crashed, seen) // the same exit, seen again

	h := a.History("a").Read(history.Hour)
	last := len(h.Times) - 1
	if h.Status5xx[last] != 1 || h.Unavailable[last] != 1 || h.MemoryBytes[last] != 10<<20 {
		t.Fatalf("5xx %v, unavailable %v, memory %v", h.Status5xx, h.Unavailable, h.MemoryBytes)
	}
	var got []string
	for _, e := range h.Events {
		got = append(got, string(e.Kind)+":"+e.DeployID+e.Detail)
	}
	want := []string{"deploy:d1deploy", "rollback:d3rollback", "crash:exit code 1"}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
}

// BenchmarkRequestHook is the per-request cost of a slot's Observe hook:
// "metrics" is the hook before the history (the Prometheus counters
// alone), "metrics+history" the hook now.
func BenchmarkRequestHook(b *testing.B) {
	m := admin.NewMetrics()
	hooks := map[string]func(string, relay.Response){
		"metrics":         func(slot string, r relay.Response) { m.ObserveRequest(slot, r.Code, r.Took) },
		"metrics+history": observeRequest(m, history.New([]string{"a"}).Slot("a")),
	}
	for _, name := range []string{"metrics", "metrics+history"} {
		hook := hooks[name]
		b.Run(name, func(b *testing.B) {
			r := relay.Response{Code: 200, Start: time.Now(), Took: 2 * time.Millisecond}
			b.ReportAllocs()
			for b.Loop() {
				hook("a", r)
			}
		})
	}
}
