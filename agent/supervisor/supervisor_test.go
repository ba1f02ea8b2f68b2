package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/logs"
	"github.com/coder-slots/coder-slots/agent/procgroup"
	"github.com/coder-slots/coder-slots/agent/reaper"
)

func TestMain(m *testing.M) {
	if g := os.Getenv(zombieParentEnv); g != "" {
		zombieParent(g)
		return
	}
	// Orphaned grandchildren must be reaped by this process (and promptly),
	// or procgroup.GroupAlive keeps counting them as zombies.
	if err := reaper.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// fastPolicy is DefaultPolicy with durations short enough for tests.
func fastPolicy() Policy {
	return Policy{
		Autorestart:         true,
		MinUptime:           200 * time.Millisecond,
		MaxRestarts:         4,
		KillTimeout:         500 * time.Millisecond,
		MemoryCheckInterval: 100 * time.Millisecond,
		RestartDelay:        100 * time.Millisecond,
		MaxRestartDelay:     2 * time.Second,
		StableUptime:        30 * time.Second,
	}
}

func newSup(t *testing.T, sampleEvery time.Duration) *Supervisor {
	t.Helper()
	s := New(filepath.Join(t.TempDir(), "logs"), logs.Options{}, sampleEvery)
	t.Cleanup(func() { s.Close(200 * time.Millisecond) })
	return s
}

// shSpec runs script with sh -c; env is added to the test's environment.
func shSpec(name, script string, pol Policy, env ...string) Spec {
	return Spec{
		Name:    name,
		Command: []string{"sh", "-c", script},
		Env:     append(os.Environ(), env...),
		Policy:  pol,
	}
}

func add(t *testing.T, s *Supervisor, spec Spec) *Process {
	t.Helper()
	p, err := s.Add(spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor polls cond every 5 ms until it holds or fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitStatus(t *testing.T, p *Process, want Status, timeout time.Duration) Info {
	t.Helper()
	var info Info
	waitFor(t, timeout, fmt.Sprintf("%s to be %s", p.Spec().Name, want), func() bool {
		info = p.Info()
		return info.Status == want
	})
	return info
}

// pidGone reports whether pid no longer exists, not even as a zombie.
func pidGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func tail(t *testing.T, p *Process) string {
	t.Helper()
	lines, err := p.Logs().Tail(500)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// startTimes reads the start times a child appended with date +%s.%N.
func startTimes(t *testing.T, path string) []time.Time {
	t.Helper()
	var out []time.Time
	for _, l := range readLines(t, path) {
		f, err := strconv.ParseFloat(l, 64)
		if err != nil {
			t.Fatalf("bad start time %q: %v", l, err)
		}
		out = append(out, time.Unix(0, int64(f*1e9)))
	}
	return out
}

func TestCrashLoopBacksOffThenErrors(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	file := filepath.Join(t.TempDir(), "starts")
	pol := fastPolicy()
	pol.MaxRestarts = 4
	pol.MinUptime = time.Second // an instant crash stays unstable even on a loaded machine
	// Each gap between two starts is the delay plus the run and the next
	// start-up, which a busy machine stretches by up to ~500 ms (seen).
	// So the delays are long against that: a gap may exceed its delay by
	// up to slack, less than the smallest delay, so a delay waited twice
	// still fails.
	pol.RestartDelay = time.Second
	pol.MaxRestartDelay = 10 * time.Second
	const slack = 900 * time.Millisecond
	p := add(t, s, shSpec("crash", `date +%s.%N >> "$F"; exit 1`, pol, "F="+file))

	p.Start()
	info := waitStatus(t, p, Errored, 8*time.Second)

	// Four unstable exits in a row: the fourth one errors (PM2's counting),
	// so three restarts happened.
	starts := startTimes(t, file)
	if len(starts) != 4 {
		t.Fatalf("%d starts, want 4", len(starts))
	}
	if info.Restarts != 3 || info.Unstable != 4 {
		t.Errorf("Restarts = %d, Unstable = %d, want 3 and 4", info.Restarts, info.Unstable)
	}
	if !strings.Contains(info.Reason, "unstable restarts") {
		t.Errorf("Reason = %q, want it to mention unstable restarts", info.Reason)
	}
	if info.LastExit != "exit code 1" || info.ExitCode != 1 {
		t.Errorf("LastExit = %q, ExitCode = %d, want exit code 1", info.LastExit, info.ExitCode)
	}
	if last := starts[len(starts)-1]; info.ExitedAt.Before(last) || time.Since(info.ExitedAt) > 8*time.Second {
		t.Errorf("ExitedAt = %v, want the last exit, after the last start at %v", info.ExitedAt, last)
	}
	if info.PID != 0 {
		t.Errorf("PID = %d after errored, want 0", info.PID)
	}
	if _, ok := s.Groups()["crash"]; ok {
		t.Error("Groups() still lists the errored process")
	}

	// The gaps are the backoff delays (0, 1 s, 1.5 s) plus that overhead:
	// never shorter, so they grow, and never longer by more than slack.
	for i := 1; i < len(starts); i++ {
		gap := starts[i].Sub(starts[i-1])
		want := pol.backoff(i - 1)
		if gap < want-20*time.Millisecond || gap > want+slack {
			t.Errorf("gap %d = %s, want %s plus at most %s", i, gap.Round(time.Millisecond), want, slack)
		}
	}
	log := tail(t, p)
	for _, want := range []string{"restarting now", "restarting in 1s", "restarting in 1.5s", "errored: 4 unstable restarts"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	// Errored stays down: past the next delay, there is still no start.
	time.Sleep(pol.backoff(3) + slack)
	if n := len(readLines(t, file)); n != 4 {
		t.Fatalf("%d starts after errored, want still 4", n)
	}
	if st := p.Info().Status; st != Errored {
		t.Fatalf("status = %s, want still errored", st)
	}

	// Start again: fresh counters. Had Unstable not been reset, the first
	// exit would be the fifth unstable one and error at once.
	p.Start()
	// (Launching at once; the loop may already have it online.)
	if info := p.Info(); info.Unstable != 0 || info.Reason != "" || (info.Status != Launching && info.Status != Online) {
		t.Errorf("after Start: %+v, want launching or online with counters reset", info)
	}
	// The first restart is immediate, so the first wait is after two runs.
	info = waitStatus(t, p, WaitingRestart, 3*time.Second)
	if n := len(readLines(t, file)); n != 6 || info.Unstable != 2 || info.Restarts != 5 {
		t.Errorf("after Start: %d starts in all, Unstable = %d, Restarts = %d; want 6, 2 and 5", n, info.Unstable, info.Restarts)
	}
	p.Stop()
	if st := p.Info().Status; st != Stopped {
		t.Errorf("status = %s after Stop while waiting to restart", st)
	}
}

func TestStableExitResetsUnstableAndBackoff(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	counter := filepath.Join(t.TempDir(), "n")
	pol := fastPolicy()
	pol.MaxRestarts = 3
	pol.MinUptime = 700 * time.Millisecond // generous: a crash under load is still quick
	pol.StableUptime = 2 * time.Second     // > 0.9 s with a busy machine's start-up (up to 1.1 s seen)
	pol.RestartDelay = 50 * time.Millisecond
	// Runs 1 and 2 crash at once (unstable), run 3 is up 2.1 s (stable, and
	// long enough to reset the backoff), run 5 crashes at once, the others
	// are up 0.9 s (stable, but not long enough to reset the backoff).
	script := `n=$(cat "$F" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$F"
case $n in 1|2|5) exit 1;; 3) sleep 2.1; exit 1;; *) sleep 0.9; exit 1;; esac`
	p := add(t, s, shSpec("stable", script, pol, "F="+counter))
	count := func() int {
		b, _ := os.ReadFile(counter)
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}

	p.Start()
	waitFor(t, 10*time.Second, "the third run", func() bool { return count() >= 3 })
	if info := p.Info(); info.Unstable != 2 {
		t.Errorf("during run 3: Unstable = %d, want 2", info.Unstable)
	}
	waitFor(t, 10*time.Second, "the fourth run", func() bool { return count() >= 4 })
	if info := p.Info(); info.Unstable != 0 || info.Status == Errored {
		t.Errorf("after a stable run: Unstable = %d, Status = %s, want 0 and not errored", info.Unstable, info.Status)
	}
	// Without the reset, run 3 would have been the third unstable exit: errored.
	waitFor(t, 10*time.Second, "the sixth run", func() bool { return count() >= 6 })
	info := p.Info()
	if info.Status == Errored || info.Unstable > 1 {
		t.Errorf("Status = %s, Unstable = %d, want running with at most 1 unstable", info.Status, info.Unstable)
	}
	p.Stop()

	// now, 50 ms; run 3 was up ≥ StableUptime: now again; then growing.
	var delays []string
	for _, l := range strings.Split(tail(t, p), "\n") {
		switch _, d, ok := strings.Cut(l, "restarting in "); {
		case ok:
			delays = append(delays, d)
		case strings.HasSuffix(l, "restarting now"):
			delays = append(delays, "0")
		}
	}
	want := []string{"0", "50ms", "0", "50ms", "75ms"}
	if len(delays) < len(want) || !slices.Equal(delays[:len(want)], want) {
		t.Errorf("restart delays = %v, want them to start with %v", delays, want)
	}
}

// nodeListener is a node program that listens on a port the kernel picks
// (so no other test can take it in between) and writes it to the file $F.
// With stubborn it ignores SIGTERM.
func nodeListener(stubborn bool) string {
	js := `const s = require("net").createServer().listen(0, "127.0.0.1", () => require("fs").writeFileSync(process.env.F, String(s.address().port)));`
	if stubborn {
		js = `process.on("SIGTERM", () => {}); ` + js
	}
	return "node -e '" + js + "'"
}

// listening waits until the node program of nodeListener listens and
// returns its port.
func listening(t *testing.T, p *Process, file string) int {
	t.Helper()
	var port int
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, _ := os.ReadFile(file)
		if port, _ = strconv.Atoi(string(b)); port > 0 && !testkit.PortFree(port) {
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("node did not listen; log:\n%s", tail(t, p))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStopFreesPortOfGrandchild(t *testing.T) {
	testkit.NeedNode(t)
	t.Parallel()
	s := newSup(t, 0)
	file := filepath.Join(t.TempDir(), "port")
	// A kill timeout far above any stop by SIGTERM on a busy machine: a
	// stop that needed SIGKILL shows in the log and in the time taken.
	pol := fastPolicy()
	pol.KillTimeout = 10 * time.Second
	p := add(t, s, shSpec("port", nodeListener(false)+" & wait", pol, "F="+file))
	p.Start()
	port := listening(t, p, file)
	waitStatus(t, p, Online, 3*time.Second) // the leader is recorded with it

	leader, ok := p.Leader()
	if !ok || leader.PID != p.Info().PID {
		t.Fatalf("Leader() = %v, %v; Info().PID = %d", leader, ok, p.Info().PID)
	}
	var nodePID int
	for _, pid := range procgroup.Descendants(leader.PID) {
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "node" {
			nodePID = pid
		}
	}
	if nodePID == 0 {
		t.Fatal("no node process under the leader")
	}

	start := time.Now()
	p.Stop()
	took := time.Since(start)
	if !testkit.PortFree(port) {
		t.Error("port still taken right after Stop returned")
	}
	if procgroup.GroupAlive(leader.PID) {
		t.Error("process group still alive after Stop")
	}
	if at := p.Info().ExitedAt; !at.IsZero() {
		t.Errorf("ExitedAt = %v after a Stop: only an exit of its own counts", at)
	}
	if !pidGone(nodePID) {
		t.Errorf("node %d still exists after Stop", nodePID)
	}
	if !pidGone(leader.PID) {
		t.Errorf("leader %d still exists after Stop", leader.PID)
	}
	if log := tail(t, p); took > pol.KillTimeout/2 || strings.Contains(log, "sending SIGKILL") {
		t.Errorf("Stop took %s; SIGTERM should have ended it well before the kill timeout; log:\n%s", took, log)
	}
	if info := p.Info(); info.Status != Stopped || info.PID != 0 {
		t.Errorf("after Stop: %+v", info)
	}
}

func TestStopKillsAfterKillTimeout(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	dir := t.TempDir()
	pol := fastPolicy()
	pol.KillTimeout = 500 * time.Millisecond
	script := `trap "" TERM; touch "$F"; while :; do sleep 0.05; done`
	p := add(t, s, shSpec("stubborn", script, pol, "F="+filepath.Join(dir, "a")))
	p.Start()
	// The script can touch its file before the supervisor has recorded
	// its leader: wait for both (a leader of PID 0 would make the checks
	// below test the test's own process group).
	var leader procgroup.Identity
	waitFor(t, 3*time.Second, "the trap and the leader", func() bool {
		_, err := os.Stat(filepath.Join(dir, "a"))
		var ok bool
		leader, ok = p.Leader()
		return err == nil && ok
	})

	start := time.Now()
	p.Stop()
	took := time.Since(start)
	if took < pol.KillTimeout || took > pol.KillTimeout+1500*time.Millisecond {
		t.Errorf("Stop took %s, want between %s and %s", took, pol.KillTimeout, pol.KillTimeout+1500*time.Millisecond)
	}
	if procgroup.GroupAlive(leader.PID) || !pidGone(leader.PID) {
		t.Error("the group survived Stop")
	}
	if log := tail(t, p); !strings.Contains(log, "sending SIGKILL") {
		t.Errorf("log lacks the SIGKILL note:\n%s", log)
	}

	// StopWithin shortens the wait.
	pol.KillTimeout = 5 * time.Second
	q := add(t, s, shSpec("stubborn2", script, pol, "F="+filepath.Join(dir, "b")))
	q.Start()
	waitFor(t, 3*time.Second, "the trap", func() bool { _, err := os.Stat(filepath.Join(dir, "b")); return err == nil })
	start = time.Now()
	q.StopWithin(200 * time.Millisecond)
	took = time.Since(start)
	if took < 200*time.Millisecond || took > 1200*time.Millisecond {
		t.Errorf("StopWithin(200ms) took %s", took)
	}
	if q.Info().Status != Stopped {
		t.Errorf("status = %s after StopWithin", q.Info().Status)
	}
}

// comm returns the command name of pid, or "".
func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// escapee waits for a descendant of the process that left its process group.
func escapee(t *testing.T, p *Process, name string) int {
	t.Helper()
	waitStatus(t, p, Online, 3*time.Second)
	leader, ok := p.Leader()
	if !ok {
		t.Fatal("no leader")
	}
	var pid int
	waitFor(t, 5*time.Second, "a descendant in its own session", func() bool {
		for _, d := range procgroup.Descendants(leader.PID) {
			if pg, err := syscall.Getpgid(d); err == nil && pg != leader.PID && comm(d) == name {
				pid = d
				return true
			}
		}
		return false
	})
	return pid
}

func TestStopKillsDescendantThatLeftTheGroup(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	p := add(t, s, shSpec("setsid", `setsid sleep 100 & sleep 100`, fastPolicy()))
	p.Start()
	pid := escapee(t, p, "sleep")
	p.Stop()
	if !pidGone(pid) {
		t.Errorf("setsid'd sleep %d survived Stop", pid)
	}
}

func TestStopKillsStubbornDescendantThatLeftTheGroup(t *testing.T) {
	testkit.NeedNode(t)
	t.Parallel()
	s := newSup(t, 0)
	file := filepath.Join(t.TempDir(), "port")
	pol := fastPolicy()
	pol.KillTimeout = 300 * time.Millisecond
	p := add(t, s, shSpec("setsid-node", "setsid "+nodeListener(true)+" & sleep 100", pol, "F="+file))
	p.Start()
	pid := escapee(t, p, "node")
	port := listening(t, p, file)
	p.Stop()
	if !testkit.PortFree(port) {
		t.Error("port still taken right after Stop returned")
	}
	if !pidGone(pid) {
		t.Errorf("setsid'd node %d still exists right after Stop returned", pid)
	}
}

func TestLeaderExitTakesItsGroupAlong(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	pol := fastPolicy()
	pol.Autorestart = false
	file := filepath.Join(t.TempDir(), "pid")
	p := add(t, s, shSpec("leftover", `sleep 100 & echo $! > "$F"; exit 0`, pol, "F="+file))
	p.Start()
	waitStatus(t, p, Stopped, 3*time.Second)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid == 0 || !pidGone(pid) {
		t.Errorf("background sleep %d outlived its exited leader", pid)
	}
}

func TestMaxMemoryRestart(t *testing.T) {
	testkit.NeedNode(t)
	t.Parallel()
	s := newSup(t, 0)
	pol := fastPolicy()
	pol.MaxMemory = 50 << 20
	pol.MaxRestarts = 0
	p := add(t, s, Spec{
		Name:    "hog",
		Command: []string{"node", "-e", `const a=[];for(let i=0;i<150;i++)a.push(Buffer.alloc(1<<20,1));setInterval(()=>{},1000)`},
		Policy:  pol,
	})
	p.Start()
	waitFor(t, 10*time.Second, "a memory restart", func() bool { return p.Info().Restarts >= 1 })
	waitFor(t, 2*time.Second, "the log line", func() bool { return strings.Contains(tail(t, p), "max_memory_restart") })
	log := tail(t, p)
	if !regexp.MustCompile(`max_memory_restart: \d+\.\d MiB > 50\.0 MiB`).MatchString(log) {
		t.Errorf("log lacks the memory restart reason:\n%s", log)
	}
	p.Stop()
	if st := p.Info().Status; st != Stopped {
		t.Errorf("status = %s after Stop", st)
	}
}

func TestAutorestartOff(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	pol := fastPolicy()
	pol.Autorestart = false
	file := filepath.Join(t.TempDir(), "starts")
	p := add(t, s, shSpec("once", `echo x >> "$F"; exit 3`, pol, "F="+file))
	p.Start()
	info := waitStatus(t, p, Stopped, 3*time.Second)
	if info.Reason != "exited and autorestart is off" {
		t.Errorf("Reason = %q", info.Reason)
	}
	if info.LastExit != "exit code 3" || info.ExitCode != 3 || info.Restarts != 0 || info.PID != 0 {
		t.Errorf("info = %+v", info)
	}
	time.Sleep(400 * time.Millisecond)
	if n := len(readLines(t, file)); n != 1 || p.Info().Status != Stopped {
		t.Errorf("%d starts, status %s; want 1 and still stopped", n, p.Info().Status)
	}
}

var timestamped = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z `)

func TestOutputReachesLogFiles(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	secret := "s3cr3t-Value-42"
	spec := shSpec("app", `echo "to stdout token=$TOKEN"; echo "to stderr" >&2; sleep 100`, fastPolicy(), "TOKEN="+secret)
	spec.Secrets = []string{secret}
	p := add(t, s, spec)
	p.Start()
	out, errPath, combined := p.Logs().Paths()
	dir := filepath.Dir(out)
	if out != filepath.Join(dir, "app-out.log") || errPath != filepath.Join(dir, "app-error.log") || combined != filepath.Join(dir, "app.log") {
		t.Fatalf("paths = %s, %s, %s", out, errPath, combined)
	}
	has := func(path, s string) bool { return strings.Contains(strings.Join(readLines(t, path), "\n"), s) }
	waitFor(t, 3*time.Second, "both lines in the combined log", func() bool {
		return has(combined, "to stdout") && has(combined, "to stderr")
	})
	if !has(out, "to stdout token=********") || has(out, "to stderr") {
		t.Errorf("out log:\n%s", strings.Join(readLines(t, out), "\n"))
	}
	if !has(errPath, "to stderr") || has(errPath, "to stdout") {
		t.Errorf("error log:\n%s", strings.Join(readLines(t, errPath), "\n"))
	}
	p.Stop()
	for _, path := range []string{out, errPath, combined} {
		if has(path, secret) {
			t.Errorf("%s holds the secret", path)
		}
		for _, l := range readLines(t, path) {
			if !timestamped.MatchString(l) {
				t.Errorf("%s: line without timestamp: %q", path, l)
			}
		}
	}

	// A process with the same Log shares the files.
	q := add(t, s, Spec{Name: "app-v2", Log: "app", Command: []string{"true"}, Policy: fastPolicy()})
	if q.Logs() != p.Logs() {
		t.Error("a second process with Log \"app\" got other log files")
	}
	if _, err := s.Add(Spec{Name: "bad/name", Command: []string{"true"}}); err == nil {
		t.Error("Add accepted a name that is no valid log file name")
	}
}

func TestLastOutputIsLoggedBeforeTheExit(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	pol := fastPolicy()
	pol.Autorestart = false
	// Fill the pipe (64 KiB) so the log pump lags behind when the process
	// exits; long lines keep the pump's work short.
	long := strings.Repeat("x", 300)
	p := add(t, s, shSpec("burst", `yes "$L" | head -n 2000; echo LAST-WORDS; exit 2`, pol, "L="+long))
	p.Start()
	waitStatus(t, p, Stopped, 5*time.Second)
	lines, err := p.Logs().Tail(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 || !strings.HasSuffix(lines[0], " "+long) || !strings.HasSuffix(lines[1], " LAST-WORDS") ||
		!strings.Contains(lines[2], "[slotagent] exit code 2") {
		t.Errorf("once stopped, the log ends with:\n%s\nwant x…x, LAST-WORDS, then the exit note", strings.Join(lines, "\n"))
	}
}

func TestStatusTransitions(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	pol := fastPolicy()
	pol.KillTimeout = 300 * time.Millisecond
	file := filepath.Join(t.TempDir(), "ready")
	p := add(t, s, shSpec("states", `trap "" TERM; touch "$F"; while :; do sleep 0.05; done`, pol, "F="+file))
	if info := p.Info(); info.Status != Stopped || info.Name != "states" {
		t.Fatalf("new process: %+v", info)
	}
	for len(s.Changes()) > 0 {
		<-s.Changes()
	}

	var (
		mu   sync.Mutex
		seen []Status
		bad  []string
	)
	quit, recDone, recording := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(recDone)
		for n := 0; ; n++ {
			if n == 1 {
				close(recording)
			}
			last := false
			select {
			case <-quit:
				last = true // one more sample after the stop returned
			default:
			}
			info := p.Info()
			mu.Lock()
			if len(seen) == 0 || seen[len(seen)-1] != info.Status {
				seen = append(seen, info.Status)
			}
			if (info.Status == Online && info.PID == 0) || (info.Status != Online && info.Status != Stopping && info.PID != 0) {
				bad = append(bad, fmt.Sprintf("%s with PID %d", info.Status, info.PID))
			}
			mu.Unlock()
			if last {
				return
			}
		}
	}()

	// Changes signals when a group starts or ends, not on every status:
	// a signal seen before the leader is set (runOnce sets it, then
	// signals) or while it is still set (finish clears it, then signals)
	// came from something else.
	quietUnlessGroup := func(when string, wantLeader bool) {
		t.Helper()
		n := len(s.Changes())
		if _, ok := p.Leader(); ok == wantLeader && n != 0 {
			t.Errorf("Changes() fired %s, with the process groups unchanged", when)
		}
	}
	<-recording
	p.Start()
	if st := p.Info().Status; st != Launching {
		t.Errorf("status right after Start = %s, want launching", st)
	}
	quietUnlessGroup("on launching", false)
	select {
	case <-s.Changes():
	case <-time.After(time.Second):
		t.Error("Changes() did not fire on start")
	}
	info := waitStatus(t, p, Online, 3*time.Second)
	if info.PID == 0 || info.StartedAt.IsZero() || info.Uptime() <= 0 {
		t.Errorf("online: %+v", info)
	}
	groups := s.Groups()
	if id, ok := groups["states"]; !ok || id.PID != info.PID || id.StartTime == 0 || !id.Alive() {
		t.Errorf("Groups() = %v while online with PID %d", groups, info.PID)
	}
	waitFor(t, 3*time.Second, "the trap", func() bool { _, err := os.Stat(file); return err == nil })
	for len(s.Changes()) > 0 {
		<-s.Changes()
	}

	stopped := make(chan struct{})
	go func() { p.Stop(); close(stopped) }()
	waitStatus(t, p, Stopping, time.Second)
	// A stop records the group's members first (a signal then), when it
	// has any besides the leader.
	if n := len(s.Changes()); n != 0 && len(p.Members()) == 0 {
		t.Error("Changes() fired on stopping, with the process groups and their members unchanged")
	}
	<-stopped
	close(quit)
	<-recDone
	select {
	case <-s.Changes():
	default:
		t.Error("Changes() did not fire on stop")
	}
	if info := p.Info(); info.Status != Stopped || info.PID != 0 || info.Uptime() != 0 {
		t.Errorf("stopped: %+v", info)
	}
	if g := s.Groups(); len(g) != 0 {
		t.Errorf("Groups() = %v after stop", g)
	}

	mu.Lock()
	defer mu.Unlock()
	// Each status was waited for above; the poller checks the order and
	// that nothing else showed (it may miss a brief status on a loaded
	// machine, so it checks for a subsequence).
	want := []Status{Stopped, Launching, Online, Stopping, Stopped}
	if !isSubsequence(seen, want) || len(seen) < 3 || seen[len(seen)-1] != Stopped {
		t.Errorf("statuses = %v, want (a subsequence of) %v", seen, want)
	}
	if len(bad) > 0 {
		t.Errorf("PID inconsistent with status: %v", bad[:min(len(bad), 5)])
	}
}

// isSubsequence reports whether a is b with some elements left out.
func isSubsequence[T comparable](a, b []T) bool {
	for _, x := range a {
		i := slices.Index(b, x)
		if i < 0 {
			return false
		}
		b = b[i+1:]
	}
	return true
}

func TestGroupsForgetsExitedLeader(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	pol := fastPolicy()
	pol.RestartDelay = 2 * time.Second // long waiting-restart
	pol.MaxRestartDelay = 2 * time.Second
	p := add(t, s, shSpec("gone", `exit 1`, pol))
	p.Start()
	waitStatus(t, p, WaitingRestart, 3*time.Second)
	if id, ok := s.Groups()["gone"]; ok {
		t.Errorf("Groups() lists %v while waiting to restart; that leader is gone", id)
	}
	if id, ok := p.Leader(); ok {
		t.Errorf("Leader() = %v while waiting to restart", id)
	}
}

func TestSampling(t *testing.T) {
	t.Parallel()
	s := newSup(t, 100*time.Millisecond)
	p := add(t, s, shSpec("busy", `while :; do :; done`, fastPolicy()))
	idle := add(t, s, shSpec("idle", `sleep 100`, fastPolicy()))
	p.Start()
	idle.Start()
	var info Info
	waitFor(t, 5*time.Second, "CPU > 20 and memory > 0", func() bool {
		info = p.Info()
		return info.CPU > 20 && info.Memory > 0
	})
	if info.CPU > 150 {
		t.Errorf("CPU = %.0f%% for one busy thread", info.CPU)
	}
	// Both are measured from the same scan, each as its own tree.
	waitFor(t, 5*time.Second, "memory of the idle process", func() bool { return idle.Info().Memory > 0 })
	if cpu := idle.Info().CPU; cpu > 20 {
		t.Errorf("CPU = %.0f%% for a sleeping process beside a busy one", cpu)
	}
	p.Stop()
	if info := p.Info(); info.CPU != 0 || info.Memory != 0 {
		t.Errorf("after stop: CPU %.1f, memory %d", info.CPU, info.Memory)
	}
}

func TestAddAndBadCommands(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	add(t, s, shSpec("dup", "true", fastPolicy()))
	if _, err := s.Add(shSpec("dup", "true", fastPolicy())); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate Add: err = %v", err)
	}
	if got, ok := s.Get("dup"); !ok || got.Spec().Name != "dup" {
		t.Error("Get(dup) failed")
	}

	empty := add(t, s, Spec{Name: "empty", Policy: fastPolicy()})
	empty.Start()
	info := waitStatus(t, empty, Errored, time.Second)
	if !strings.Contains(info.Reason, "empty command") {
		t.Errorf("empty command: Reason = %q", info.Reason)
	}
	if info.Restarts != 0 {
		t.Errorf("empty command restarted %d times", info.Restarts)
	}

	// A missing executable with autorestart off is not silently retried.
	pol := fastPolicy()
	pol.Autorestart = false
	missing := add(t, s, Spec{Name: "missing", Command: []string{"/nonexistent/app"}, Policy: pol})
	missing.Start()
	info = waitStatus(t, missing, Errored, time.Second)
	if !strings.Contains(info.Reason, "/nonexistent/app") || info.Restarts != 0 || info.LastExit != "failed to start" {
		t.Errorf("missing, no autorestart: %+v", info)
	}

	// With autorestart it is retried, and the reason still says why.
	pol = fastPolicy()
	pol.MaxRestarts = 2
	pol.RestartDelay = 20 * time.Millisecond
	retried := add(t, s, Spec{Name: "retried", Command: []string{"/nonexistent/app"}, Policy: pol})
	retried.Start()
	info = waitStatus(t, retried, Errored, 2*time.Second)
	if !strings.Contains(info.Reason, "unstable restarts") || !strings.Contains(info.Reason, "/nonexistent/app") {
		t.Errorf("missing, autorestart: Reason = %q", info.Reason)
	}

	if names := len(s.List()); names != 4 {
		t.Errorf("List() has %d processes, want 4", names)
	}
	s.Remove("empty", 0)
	if _, ok := s.Get("empty"); ok {
		t.Error("Remove did not forget the process")
	}
}

func TestConcurrentStops(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	for round := range 5 {
		p := add(t, s, shSpec(fmt.Sprintf("multi%d", round), `sleep 100`, fastPolicy()))
		p.Start()
		waitStatus(t, p, Online, 3*time.Second)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				p.Stop()
				if st := p.Info().Status; st != Stopped {
					t.Errorf("Stop returned with status %s", st)
				}
			}()
		}
		close(gate)
		wg.Wait()
	}
}

func TestRestart(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	p := add(t, s, shSpec("re", `sleep 100`, fastPolicy()))
	p.Start()
	first := waitStatus(t, p, Online, 3*time.Second)
	p.Restart()
	second := waitStatus(t, p, Online, 3*time.Second)
	if second.PID == first.PID || second.Restarts != 1 {
		t.Errorf("after Restart: PID %d → %d, Restarts %d", first.PID, second.PID, second.Restarts)
	}
	if !pidGone(first.PID) {
		t.Errorf("old PID %d still exists", first.PID)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	t.Parallel()
	s := New(filepath.Join(t.TempDir(), "logs"), logs.Options{}, 50*time.Millisecond)
	var pids []int
	dir := t.TempDir()
	for i := range 3 {
		pol := fastPolicy()
		pol.KillTimeout = 10 * time.Second
		ready := filepath.Join(dir, strconv.Itoa(i))
		p, err := s.Add(shSpec(fmt.Sprintf("c%d", i), `trap "" TERM; touch "$F"; while :; do sleep 0.05; done`, pol, "F="+ready))
		if err != nil {
			t.Fatal(err)
		}
		p.Start()
		pids = append(pids, waitStatus(t, p, Online, 3*time.Second).PID)
		waitFor(t, 3*time.Second, "the trap", func() bool { _, err := os.Stat(ready); return err == nil })
	}
	start := time.Now()
	s.Close(300 * time.Millisecond)
	// 300 ms and the SIGKILL, not the 10 s kill timeout (a busy machine
	// adds seconds to the first).
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close(300ms) of three stubborn processes took %s", took)
	}
	for _, pid := range pids {
		if procgroup.GroupAlive(pid) {
			t.Errorf("group %d survived Close", pid)
		}
	}
	if n := len(s.List()); n != 0 {
		t.Errorf("%d processes left after Close", n)
	}
}
