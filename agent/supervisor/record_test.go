package supervisor

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/procgroup"
)

// cmdline is the command line of process pid, its arguments joined by
// spaces.
func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// TestRecordWithHoldsTheCommandUntilRecorded: a new group is recorded
// before its command runs, so an agent killed in between leaves nothing
// that the next one cannot find.
func TestRecordWithHoldsTheCommandUntilRecorded(t *testing.T) {
	s := newSup(t, 0)
	file := filepath.Join(t.TempDir(), "ran")
	release := make(chan struct{})
	held := make(chan procgroup.Identity, 1)
	var once sync.Once
	s.RecordWith(func() {
		once.Do(func() {
			held <- s.Groups()["gated"]
			<-release
		})
	})
	p := add(t, s, shSpec("gated", `touch "$F"; exec sleep 30`, fastPolicy(), "F="+file))
	p.Start()
	var leader procgroup.Identity
	select {
	case leader = <-held:
	case <-time.After(3 * time.Second):
		t.Fatal("the group was never recorded")
	}
	if !leader.Alive() {
		t.Fatalf("the recorded leader %+v does not run", leader)
	}
	// Held: the leader waits at its gate, the command has not run.
	if cmd := cmdline(leader.PID); !strings.Contains(cmd, "slotagent-gate") {
		t.Errorf("while recording, the leader runs %q, not the gate", cmd)
	}
	if _, err := os.Stat(file); err == nil {
		t.Error("the command ran before its group was recorded")
	}
	close(release)
	waitFor(t, 3*time.Second, "the command to run", func() bool { _, err := os.Stat(file); return err == nil })
	waitFor(t, 3*time.Second, "the leader to exec the command", func() bool { return cmdline(leader.PID) == "sleep 30" })
	if id, _ := procgroup.Lookup(leader.PID); id != leader {
		t.Errorf("the leader's identity changed across the exec: %+v, recorded %+v", id, leader)
	}
}

// TestStopRecordsTheMembersFirst: when a stop begins, the group's processes
// are recorded before the signal, so a leader that exits on it (as npm
// does) leaves its draining children findable.
func TestStopRecordsTheMembersFirst(t *testing.T) {
	s := newSup(t, 0)
	file := filepath.Join(t.TempDir(), "inner.pid")
	var mu sync.Mutex
	var members []procgroup.Identity
	var leaderAlive bool
	var p *Process
	s.RecordWith(func() {
		m := s.Members()["drains"]
		if len(m) == 0 {
			return // the start, or the end
		}
		leader, _ := p.Leader()
		mu.Lock()
		members, leaderAlive = m, leader.Alive()
		mu.Unlock()
	})
	p = add(t, s, shSpec("drains",
		`sh -c 'trap "" TERM; echo $$ > "$F"; while :; do sleep 0.05; done' & wait`, fastPolicy(), "F="+file))
	p.Start()
	var inner int
	waitFor(t, 3*time.Second, "the inner shell", func() bool {
		b, _ := os.ReadFile(file)
		inner, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return inner != 0
	})
	p.Stop()
	mu.Lock()
	defer mu.Unlock()
	if !slices.ContainsFunc(members, func(id procgroup.Identity) bool { return id.PID == inner }) {
		t.Errorf("the members recorded at the stop %v lack the inner shell %d", members, inner)
	}
	if !leaderAlive {
		t.Error("the members were recorded after the leader had the stop signal")
	}
	if m, g := s.Members(), s.Groups(); len(m) != 0 || len(g) != 0 {
		t.Errorf("after the stop: members %v, groups %v", m, g)
	}
}
