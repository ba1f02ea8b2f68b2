package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
)

// slotHistory is slot's history over the last hour, its requests summed,
// and its events as "kind:detail".
func (a *agent) slotHistory(slot string) (requests uint32, events []string) {
	a.t.Helper()
	var h admin.SlotHistory
	a.apiJSON("/api/slots/"+slot+"/history", &h)
	for _, n := range h.Requests {
		requests += n
	}
	for _, e := range h.Events {
		events = append(events, string(e.Kind)+":"+e.Detail)
	}
	return requests, events
}

// TestHistorySurvivesRestart: a slot's requests and events (a stop, the
// start of the stopped slot) are still in its history after a clean stop
// of the agent and after a kill -9, with each start of the agent recorded;
// a history file of another program is moved aside with a warning and
// does not stop the agent.
func TestHistorySurvivesRestart(t *testing.T) {
	a := newAgent(t)
	writeState(t, a.dataDir)
	a.start()
	testkit.WaitHTTP(t, a.url("a", "/health"), 200, 10*time.Second)
	for range 7 {
		body(t, a.url("a", "/"))
	}
	if out, _, code := a.cli("stop", "a"); code != 0 {
		t.Fatalf("stop a: %d %s", code, out)
	}
	if out, _, code := a.cli("restart", "a"); code != 0 || !strings.Contains(out, "started release r1") {
		t.Fatalf("restart a: %d %s", code, out)
	}
	testkit.WaitHTTP(t, a.url("a", "/health"), 200, 10*time.Second)
	before, events := a.slotHistory("a")
	want := "start:agent started,stop:,start:release r1"
	if before < 9 || strings.Join(events, ",") != want {
		t.Fatalf("history before the restart: %d requests (want at least 9), events %q (want %q)", before, events, want)
	}

	a.signal(syscall.SIGTERM)
	a.wait(15 * time.Second)
	a.start()
	if after, events := a.slotHistory("a"); after < before || strings.Join(events, ",") != want+",start:agent started" {
		t.Fatalf("after a clean restart: %d requests (were %d), events %q", after, before, events)
	}

	a.signal(syscall.SIGKILL)
	a.wait(5 * time.Second)
	a.start()
	if after, events := a.slotHistory("a"); after < before || strings.Join(events, ",") != want+",start:agent started,start:agent started" {
		t.Fatalf("after kill -9: %d requests (were %d), events %q", after, before, events)
	}

	a.signal(syscall.SIGTERM)
	a.wait(15 * time.Second)
	path := filepath.Join(a.dataDir, "history", "b.hist")
	if err := os.WriteFile(path, []byte("something else\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.start()
	var about admin.About
	a.apiJSON("/healthz", &about)
	if len(about.Warnings) != 1 || !strings.Contains(about.Warnings[0], "b.hist was unusable (15 bytes, shorter than a header)") {
		t.Fatalf("warnings after a foreign history file: %q", about.Warnings)
	}
	if b, err := os.ReadFile(path + ".ignored"); err != nil || string(b) != "something else\n" {
		t.Fatalf("the foreign file was not kept aside: %q %v", b, err)
	}
	if after, _ := a.slotHistory("a"); after < before {
		t.Fatalf("slot a's history after b's was reset: %d requests (were %d)", after, before)
	}
}
