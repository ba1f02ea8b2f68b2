package supervisor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/procgroup"
	"github.com/coder-slots/coder-slots/agent/reaper"
)

// TestWaitGoneWakesOnReaps waits with a poll interval longer than the test,
// so only the wait loop's reaps can end the wait: first the leader's, then
// that of a group member the leader left behind (re-parented to the test,
// a subreaper since TestMain).
func TestWaitGoneWakesOnReaps(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command("sh", "-c", `sleep 100 & echo $! > "$0"; exec sleep 100`, file)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	child, err := reaper.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-child.Pid, syscall.SIGKILL)
		<-child.Done()
	})
	var member int
	waitFor(t, 5*time.Second, "the background sleep's PID", func() bool {
		b, _ := os.ReadFile(file)
		member, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return member > 0
	})

	const never = time.Hour
	if waitGone(child, child.Pid, nil, 100*time.Millisecond, never, nil) {
		t.Fatal("waitGone reported a running group gone")
	}
	gone := make(chan bool, 1)
	go func() { gone <- waitGone(child, child.Pid, nil, 20*time.Second, never, nil) }()

	// The leader's exit alone does not end the wait: its group lives on.
	if err := syscall.Kill(child.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-child.Done()
	select {
	case ok := <-gone:
		t.Fatalf("waitGone returned %v while the group member %d lives", ok, member)
	case <-time.After(200 * time.Millisecond):
	}

	start := time.Now()
	if err := syscall.Kill(member, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-gone:
		if !ok {
			t.Fatal("waitGone reported the group alive after its last member was reaped")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("waitGone took %s to see the last member reaped", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("waitGone did not wake when the last member of the group was reaped")
	}
	if !pidGone(member) {
		t.Errorf("group member %d still exists", member)
	}
}

// TestShorterStopCutsAStopUnderWay: a stop waiting the kill timeout for a
// process that ignores SIGTERM ends early when a later stop gives a shorter
// grace (the agent's shutdown budget).
func TestShorterStopCutsAStopUnderWay(t *testing.T) {
	s := newSup(t, 0)
	pol := fastPolicy()
	pol.KillTimeout = time.Minute
	file := filepath.Join(t.TempDir(), "ready")
	p := add(t, s, shSpec("stubborn", `trap "" TERM; touch "$F"; while :; do sleep 0.05; done`, pol, "F="+file))
	p.Start()
	waitFor(t, 3*time.Second, "the trap", func() bool { _, err := os.Stat(file); return err == nil })
	first := make(chan struct{})
	go func() { p.Stop(); close(first) }()
	waitFor(t, 3*time.Second, "the first stop", func() bool { return p.Info().Status == Stopping })
	start := time.Now()
	p.StopWithin(300 * time.Millisecond)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the shorter stop took %s", d)
	}
	<-first
	if info := p.Info(); info.Status != Stopped {
		t.Fatalf("after the stops: %+v", info)
	}
}

// TestRemovedProcessesSecretsAreUnmasked: the secrets of a process stay
// masked in its shared log only while it lives; a later process's lines
// show those values as they are.
func TestRemovedProcessesSecretsAreUnmasked(t *testing.T) {
	s := newSup(t, 0)
	pol := fastPolicy()
	pol.Autorestart = false
	say := func(name, secret string) {
		t.Helper()
		spec := shSpec(name, `echo "value=$V"`, pol, "V=old-release-value", "W=live-value-1")
		spec.Log, spec.Secrets = "app", []string{secret}
		p := add(t, s, spec)
		p.Start()
		waitFor(t, 5*time.Second, name+" to exit", func() bool { return p.Info().Status == Stopped })
	}
	say("app@r1", "old-release-value")
	sink, err := s.Logs("app")
	if err != nil {
		t.Fatal(err)
	}
	lines, _ := sink.Tail(10)
	if !strings.Contains(strings.Join(lines, "\n"), "value=********") {
		t.Fatalf("r1's secret not masked while it lives: %q", lines)
	}
	s.Remove("app@r1", 0)
	say("app@r2", "live-value-1")
	lines, _ = sink.Tail(10)
	if n := len(lines); n < 2 || !strings.HasSuffix(lines[n-2], " value=old-release-value") {
		t.Fatalf("a removed process's value is still masked: %q", lines)
	}
}

// zombieParentEnv names the process group in which the test binary, run
// as a helper (see zombieParent), starts a process it never reaps.
const zombieParentEnv = "SUPERVISOR_TEST_ZOMBIE_PARENT_OF_GROUP"

// zombieParent is the test binary run as a helper: it starts sleep in
// process group pgid (the helper is outside it, in the test's session),
// prints the sleep's PID and waits without ever reaping it, so once
// killed the sleep stays in the group as a zombie.
func zombieParent(pgid string) {
	g, err := strconv.Atoi(pgid)
	if err != nil {
		os.Exit(2)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		os.Exit(2)
	}
	pid, err := syscall.ForkExec(sleep, []string{"sleep", "100"}, &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Setpgid: true, Pgid: g}})
	if err != nil {
		os.Exit(2)
	}
	fmt.Println(pid)
	time.Sleep(time.Hour)
}

// TestStopSaysWhatOutlivesSIGKILL: a group that still has a process
// after SIGKILL (here a zombie whose parent, outside the group, never
// reaps it) ends the stop's wait after killWait, with a line in the log.
func TestStopSaysWhatOutlivesSIGKILL(t *testing.T) {
	s := newSup(t, 0)
	pol := fastPolicy()
	pol.KillTimeout = 200 * time.Millisecond
	p := add(t, s, shSpec("kept", "exec sleep 100", pol))
	p.Start()
	var leader procgroup.Identity
	waitFor(t, 5*time.Second, "the leader", func() bool {
		var ok bool
		leader, ok = p.Leader()
		return ok && comm(leader.PID) == "sleep"
	})
	out := filepath.Join(t.TempDir(), "pid")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), zombieParentEnv+"="+strconv.Itoa(leader.PID))
	cmd.Stdout = f
	helper, err := reaper.Start(cmd)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(helper.Pid, syscall.SIGKILL)
		<-helper.Done()
	})
	var member int
	waitFor(t, 5*time.Second, "the helper's sleep in the group", func() bool {
		b, _ := os.ReadFile(out)
		member, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		pg, err := syscall.Getpgid(member)
		return member > 0 && err == nil && pg == leader.PID
	})

	start := time.Now()
	p.Stop()
	if took := time.Since(start); took < killWait {
		t.Fatalf("Stop returned after %s, before the group was gone or %s passed", took, killWait)
	}
	if !procgroup.GroupAlive(leader.PID) {
		t.Fatal("the group is gone: the test shows nothing")
	}
	want := fmt.Sprintf("process group %d still not gone %s after SIGKILL", leader.PID, killWait)
	if log := tail(t, p); !strings.Contains(log, want) {
		t.Fatalf("log lacks %q:\n%s", want, log)
	}
}
