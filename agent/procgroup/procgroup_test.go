package procgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startGroup starts sh -c script as the leader of a new process group and
// makes sure it is killed when the test ends.
func startGroup(t testing.TB, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", script, err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

// waitFor polls cond every few milliseconds until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLookupSelf(t *testing.T) {
	id, err := Lookup(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if id.PID != os.Getpid() || id.StartTime == 0 {
		t.Fatalf("Lookup(self) = %+v", id)
	}
	if !id.Alive() {
		t.Fatal("self not alive")
	}
	again, err := Lookup(os.Getpid())
	if err != nil || again != id {
		t.Fatalf("second Lookup = %+v, %v; want %+v", again, err, id)
	}
}

func TestLookupMissing(t *testing.T) {
	// PIDs never reach 1<<30 (pid_max is at most 1<<22).
	_, err := Lookup(1 << 30)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Lookup(missing) error = %v, want fs.ErrNotExist", err)
	}
	if (Identity{PID: 1 << 30}).Alive() {
		t.Fatal("missing process alive")
	}
}

func TestKillGroupWrongStartTime(t *testing.T) {
	cmd := startGroup(t, "sleep 100")
	id, err := Lookup(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	wrong := Identity{PID: id.PID, StartTime: id.StartTime + 1}
	if wrong.Alive() {
		t.Fatal("identity with wrong start time reported alive")
	}
	sent, err := KillGroup(wrong, syscall.SIGKILL)
	if sent || err != nil {
		t.Fatalf("KillGroup(wrong start time) = %v, %v; want false, nil", sent, err)
	}
	time.Sleep(50 * time.Millisecond)
	if !id.Alive() {
		t.Fatal("process died although its start time did not match")
	}
}

func TestKillGroupNotLeader(t *testing.T) {
	// A process that is not the leader of its own group must not have a
	// group killed: sleep stays in the test's process group.
	cmd := exec.Command("sleep", "100") // inherits our process group
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	id, err := Lookup(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := KillGroup(id, syscall.SIGKILL)
	if sent || err != nil {
		t.Fatalf("KillGroup(non-leader) = %v, %v; want false, nil", sent, err)
	}
	if !id.Alive() {
		t.Fatal("non-leader died")
	}
}

func TestKillGroupRefusesSpecialPIDs(t *testing.T) {
	for _, pid := range []int{-1, 0, 1} {
		sent, err := KillGroup(Identity{PID: pid}, 0)
		if sent || err != nil {
			t.Errorf("KillGroup(pid %d) = %v, %v; want false, nil", pid, sent, err)
		}
		if GroupAlive(pid) {
			t.Errorf("GroupAlive(%d) = true, want false", pid)
		}
	}
}

func TestTreeAndKillGroup(t *testing.T) {
	// The sleeps outlive the shell for a moment and become zombies of
	// whoever adopts them; unreaped zombies still count as group members.
	// Adopt them here and reap them, rather than depend on how fast PID 1
	// reaps orphans.
	setSubreaper(t)
	cmd := startGroup(t, "sleep 100 & sleep 100 & wait")
	pid := cmd.Process.Pid
	id, err := Lookup(pid)
	if err != nil {
		t.Fatal(err)
	}

	var kids []int
	waitFor(t, 5*time.Second, "two sleeps", func() bool {
		kids = Descendants(pid)
		if len(kids) != 2 {
			return false
		}
		for _, k := range kids {
			if comm(k) != "sleep" { // the fork may not have exec'd yet
				return false
			}
		}
		return true
	})
	if slices.Contains(kids, pid) {
		t.Fatalf("Descendants(%d) = %v includes the root", pid, kids)
	}

	shell, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	u, err := TreeUsage(pid)
	if err != nil {
		t.Fatal(err)
	}
	shellRSS := shell.rssPages * uint64(os.Getpagesize())
	if u.RSS == 0 || u.RSS <= shellRSS {
		t.Fatalf("tree RSS %d, shell alone %d: want tree > shell > 0", u.RSS, shellRSS)
	}
	if u.CPUTime < 0 {
		t.Fatalf("negative CPU time %v", u.CPUTime)
	}

	if !GroupAlive(pid) {
		t.Fatal("group not alive before kill")
	}
	sent, err := KillGroup(id, syscall.SIGKILL)
	if !sent || err != nil {
		t.Fatalf("KillGroup = %v, %v; want true, nil", sent, err)
	}
	_ = cmd.Wait() // reap the shell
	for _, k := range kids {
		reap(t, k)
	}
	waitFor(t, 5*time.Second, "group to die", func() bool { return !GroupAlive(pid) })
	if id.Alive() {
		t.Fatal("leader alive after kill")
	}
	if _, err := TreeUsage(pid); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("TreeUsage(dead) error = %v, want fs.ErrNotExist", err)
	}
	sent, err = KillGroup(id, syscall.SIGKILL)
	if sent || err != nil {
		t.Fatalf("KillGroup(dead) = %v, %v; want false, nil", sent, err)
	}
}

func TestSnapshotMeasuresSeveralTrees(t *testing.T) {
	var roots []int
	for range 2 {
		cmd := startGroup(t, "sleep 100 & wait")
		pid := cmd.Process.Pid
		waitFor(t, 5*time.Second, "a sleep", func() bool {
			// Just after its exec a process may have no page resident yet.
			kids := Descendants(pid)
			if len(kids) != 1 || comm(kids[0]) != "sleep" {
				return false
			}
			st, err := readStat(kids[0])
			return err == nil && st.rssPages > 0
		})
		roots = append(roots, pid)
	}
	snap, err := TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range roots {
		u, err := snap.TreeUsage(pid)
		if err != nil {
			t.Fatal(err)
		}
		shell, err := readStat(pid)
		if err != nil {
			t.Fatal(err)
		}
		if shellRSS := shell.rssPages * uint64(os.Getpagesize()); u.RSS <= shellRSS {
			t.Errorf("tree of %d: RSS %d, the shell alone %d: want the sleep counted too", pid, u.RSS, shellRSS)
		}
	}
	// A process that started after the snapshot is not in it.
	late := startGroup(t, "sleep 100").Process.Pid
	if _, err := snap.TreeUsage(late); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("TreeUsage of a process newer than the snapshot: error = %v, want fs.ErrNotExist", err)
	}
}

func TestCommWithParens(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary:", err)
	}
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "a) b (c")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "100")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	waitFor(t, 5*time.Second, "exec of the copied sleep", func() bool { return comm(pid) == "a) b (c" })

	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != os.Getpid() || st.pgrp != pid || st.state != 'S' && st.state != 'R' {
		t.Fatalf("parsed %+v: want ppid %d, pgrp %d, state S or R", st, os.Getpid(), pid)
	}
	id, err := Lookup(pid)
	if err != nil {
		t.Fatal(err)
	}
	self, _ := Lookup(os.Getpid())
	if id.StartTime < self.StartTime {
		t.Fatalf("child start time %d before ours %d", id.StartTime, self.StartTime)
	}
	if sent, err := KillGroup(id, syscall.SIGKILL); !sent || err != nil {
		t.Fatalf("KillGroup = %v, %v; want true, nil", sent, err)
	}
}

func TestParseStat(t *testing.T) {
	line := "42 (a) b (c) S 1 42 42 0 -1 4194304 100 0 0 0 7 3 0 0 20 0 1 0 123456 5000000 250 " +
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := stat{state: 'S', ppid: 1, pgrp: 42, utime: 7, stime: 3, startTime: 123456, rssPages: 250}
	if st != want {
		t.Fatalf("parseStat = %+v, want %+v", st, want)
	}
	for _, bad := range []string{"", "42 (x", "42 (x) S 1 2", "42 (x) S one 42 42 0 -1 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0 0"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

// setSubreaper makes the test process adopt orphaned descendants until the
// test ends.
func setSubreaper(t testing.TB) {
	t.Helper()
	const prSetChildSubreaper = 36
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", e)
	}
	t.Cleanup(func() { syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 0, 0) })
}

// reap waits up to 5 s for the adopted orphan pid to exit and reaps it.
func reap(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if err != nil {
			t.Fatalf("wait for %d: %v", pid, err)
		}
		if got == pid {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running after 5s", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// comm returns the command name of pid, or "" when it cannot be read.
func comm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

// BenchmarkTreeUsage measures TreeUsage over a tree of 100 processes: a
// shell and 99 sleeps. It reports how many processes /proc held.
func BenchmarkTreeUsage(b *testing.B) {
	setSubreaper(b)
	cmd := startGroup(b, "for i in $(seq 99); do sleep 100 & done; wait")
	pid := cmd.Process.Pid
	var kids []int
	waitFor(b, 10*time.Second, "99 sleeps", func() bool {
		kids = Descendants(pid)
		return len(kids) == 99
	})
	procs, err := scan()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := TreeUsage(pid); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(procs)), "procs")
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = cmd.Wait()
	for _, k := range kids {
		reap(b, k)
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry("job-")
	ended := r.Started(os.Getpid())
	<-r.Changes()
	me, err := Lookup(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Groups(); len(got) != 1 || got["job-"+strconv.Itoa(os.Getpid())] != me {
		t.Fatalf("groups %v, want this process", got)
	}
	ended()
	<-r.Changes()
	if got := r.Groups(); len(got) != 0 {
		t.Fatalf("groups after the end: %v", got)
	}
	r.Started(1 << 30)() // no such process: nothing recorded
	if got := r.Groups(); len(got) != 0 {
		t.Fatalf("groups of a process that does not exist: %v", got)
	}
}

func TestRegistryRecordsBeforeStartedReturns(t *testing.T) {
	r := NewRegistry("job-")
	var seen map[string]Identity
	r.RecordWith(func() { seen = r.Groups() })
	ended := r.Started(os.Getpid())
	if len(seen) != 1 {
		t.Fatalf("recorded %v when Started returned, want this process", seen)
	}
	ended()
	<-r.Changes() // an end is signalled
	if got := r.Groups(); len(got) != 0 {
		t.Fatalf("groups after the end: %v", got)
	}
}
