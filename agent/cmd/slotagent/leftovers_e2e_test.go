package main

// After a kill -9 of the agent, the next one kills every app process the
// dead one had started (DESIGN.md, "State and rehydrate"): these tests
// kill the agent right after restarts, and during a stop, a restart and a
// rollback, with apps started through a package manager (npm start: npm →
// sh → node, one process group), and check that no process whose working
// directory lies in the data dir survives.

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/procgroup"
	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/state"
)

// npmRelease writes the app src, started by `npm start` into the data dir (as a
// deploy would) and returns its release.
func npmRelease(t *testing.T, dataDir, slotName, id, src string, env map[string]string) state.Release {
	t.Helper()
	dir := filepath.Join(dataDir, "apps", slotName, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "server.js"), src)
	writeFile(t, filepath.Join(dir, "package.json"), `{"name": "app", "version": "1.0.0", "private": true, "scripts": {"start": "node server.js"}}`)
	return state.Release{ID: id, Dir: dir, Command: "npm start", Env: env, CreatedAt: time.Now().UTC()}
}

// writeNPMState gives each slot of rels its releases (the last one current)
// and saves the state file.
func writeNPMState(t *testing.T, dataDir string, rels map[string][]state.Release) {
	t.Helper()
	testkit.NeedNode(t)
	st := state.New()
	for name, rs := range rels {
		st.Slots[name] = &state.Slot{Desired: state.DesiredRunning, Current: rs[len(rs)-1].ID, Releases: rs}
	}
	if err := state.Save(filepath.Join(dataDir, "state.json"), st); err != nil {
		t.Fatal(err)
	}
}

// strays lists the processes whose working directory lies in dir and whose
// process group is not one of keep.
func strays(dir string, keep map[int]bool) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var out []string
	for _, p := range procs {
		cwd, err := os.Readlink(filepath.Join(p, "cwd"))
		if err != nil || (cwd != dir && !strings.HasPrefix(cwd, dir+"/")) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(p, "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name: state, ppid, pgrp.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		if pgrp, _ := strconv.Atoi(f[2]); keep[pgrp] {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		out = append(out, filepath.Base(p)+" "+strings.ReplaceAll(strings.TrimSpace(string(cmd)), "\x00", " "))
	}
	return out
}

// noStrays fails the test when, after a short wait for exits under way, a
// process in the data dir is not in one of the agent's process groups
// (the leaders listed by status; none when the agent is down). It kills
// what it finds, so one failure does not leak into other tests.
func (a *agent) noStrays(when string, running bool) {
	a.t.Helper()
	keep := map[int]bool{}
	if running {
		for _, p := range a.processes().Processes {
			if p.Type == "app" && p.PID != 0 {
				keep[p.PID] = true
			}
		}
	}
	var left []string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if left = strays(a.dataDir, keep); len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	for _, l := range left {
		if pid, err := strconv.Atoi(strings.Fields(l)[0]); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	a.t.Fatalf("%s: %d processes of an earlier agent survive:\n%s\nagent log:\n%s", when, len(left), strings.Join(left, "\n"), a.stderr())
}

// serves waits until slot answers its app's greeting.
func (a *agent) serves(slotName, version string) {
	a.t.Helper()
	getUntil(a.t, a.url(slotName, "/"), "hello from "+slotName+" "+version, 20*time.Second)
}

// TestKill9RightAfterRestartsLeavesNoApp is issue 25's sequence: ten rounds
// of restart b, restart a, kill -9, run; then a clean stop.
func TestKill9RightAfterRestartsLeavesNoApp(t *testing.T) {
	a := newAgent(t)
	writeNPMState(t, a.dataDir, map[string][]state.Release{
		"a": {npmRelease(t, a.dataDir, "a", "r1", testkit.HelloApp, nil)},
		"b": {npmRelease(t, a.dataDir, "b", "r1", testkit.HelloApp, nil)},
	})
	a.start()
	for round := 1; round <= 10; round++ {
		a.serves("a", "v1")
		a.serves("b", "v1")
		a.noStrays("round "+strconv.Itoa(round), true)
		a.mustCLI("restart", "b")
		a.mustCLI("restart", "a")
		a.signal(syscall.SIGKILL)
		a.wait(5 * time.Second)
		a.start()
	}
	a.serves("a", "v1")
	a.serves("b", "v1")
	a.noStrays("after the last round", true)
	a.signal(syscall.SIGTERM)
	a.wait(15 * time.Second)
	a.noStrays("after a clean stop", false)
}

// TestKill9DuringStopRestartAndRollback kills the agent while it waits for
// an app that ignores SIGTERM to stop (a stop, a restart, the old release
// of a rollback), and while a rollback's release starts.
func TestKill9DuringStopRestartAndRollback(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		// ready is when the agent is killed; leader is the serving app's
		// group leader (npm).
		ready func(a *agent, leader int)
	}{
		{"stop", []string{"stop", "a"}, func(a *agent, leader int) {
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				// The placeholder serves while the app stops, and npm,
				// the group's leader, has exited on SIGTERM: its node
				// drains on, found only as a recorded member.
				if _, b := body(a.t, a.url("a", "/")); strings.Contains(b, "ready for deployment") && !testkit.PIDAlive(leader) {
					return
				}
				if time.Now().After(deadline) {
					a.t.Fatal("slot a never went back to its placeholder with its npm gone")
				}
			}
		}},
		{"stop at once", []string{"stop", "a"}, func(a *agent, _ int) {
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				if _, b := body(a.t, a.url("a", "/")); strings.Contains(b, "ready for deployment") {
					return // the placeholder, as the app's stop begins
				}
				if time.Now().After(deadline) {
					a.t.Fatal("slot a never went back to its placeholder")
				}
			}
		}},
		{"restart", []string{"restart", "a"}, func(a *agent, _ int) { a.waitStatus("a", "stopping") }},
		{"rollback", []string{"rollback", "a", "r1"}, func(a *agent, _ int) { a.serves("a", "v1") }},
		{"rollback start", []string{"rollback", "a", "r1"}, func(a *agent, _ int) {
			a.waitProcessIn(filepath.Join(a.dataDir, "apps", "a", "r1"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAgent(t)
			writeNPMState(t, a.dataDir, map[string][]state.Release{"a": {
				npmRelease(t, a.dataDir, "a", "r1", stubbornApp, map[string]string{"VERSION": "v1"}),
				npmRelease(t, a.dataDir, "a", "r2", stubbornApp, map[string]string{"VERSION": "v2"}),
			}})
			a.start()
			a.serves("a", "v2")
			_, pidText := body(t, a.url("a", "/pid"))
			old, _ := strconv.Atoi(pidText)
			leader := a.processes().Processes[1].PID
			cmd := exec.Command(binary, tc.args...)
			cmd.Env = a.env
			client, err := reaper.Start(cmd)
			if err != nil {
				t.Fatal(err)
			}
			tc.ready(a, leader)
			a.signal(syscall.SIGKILL)
			a.wait(5 * time.Second)
			<-client.Done()
			if tc.name != "rollback start" && !testkit.PIDAlive(old) {
				t.Fatalf("the old app (pid %d) is gone before the agent was killed: the test shows nothing", old)
			}
			a.start()
			a.noStrays("after "+tc.name+" and kill -9", true)
			if strings.HasPrefix(tc.name, "stop") {
				// The stop was under way: the next agent does not bring
				// the app back.
				if _, b := body(t, a.url("a", "/")); !strings.Contains(b, "ready for deployment") {
					t.Fatalf("after a stop cut short, slot a answers %q, not its placeholder", b)
				}
			}
			a.signal(syscall.SIGTERM)
			a.wait(15 * time.Second)
			a.noStrays("after a clean stop", false)
		})
	}
}

// waitStatus waits until the app of slotName has status want.
func (a *agent) waitStatus(slotName, want string) {
	a.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, p := range a.processes().Processes {
			if p.Slot == slotName && p.Status == want {
				return
			}
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("slot %s never was %s: %+v", slotName, want, a.processes())
		}
	}
}

// waitProcessIn waits until a process runs in dir.
func (a *agent) waitProcessIn(dir string) {
	a.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(strays(dir, nil)) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			a.t.Fatalf("no process ever ran in %s", dir)
		}
	}
}

// TestKill9AsABuildStartsLeavesNoBuild: the agent dies the moment a
// deploy's build command runs (the build kills it, the earliest moment a
// command can be seen running); the next agent kills the build and serves
// the release from before the deploy.
func TestKill9AsABuildStartsLeavesNoBuild(t *testing.T) {
	a, bare := servingV1WithV2Pushed(t)
	a.mustCLI("deploy", "a", "--repo", bare, "--build", "kill -KILL $PPID; exec sleep 300")
	a.wait(60 * time.Second)
	if sig := a.child.Exit().Signal; sig != syscall.SIGKILL {
		t.Fatalf("the agent ended with %s, not killed by its build\n%s", a.child.Exit(), a.stderr())
	}
	building := func() bool {
		return slices.ContainsFunc(strays(a.dataDir, nil), func(p string) bool { return strings.HasSuffix(strings.TrimSpace(p), " sleep 300") })
	}
	if !building() {
		t.Fatalf("no build outlived the agent: the test shows nothing (in the data dir: %v)", strays(a.dataDir, nil))
	}
	a.start(fastDeploys...)
	a.noStrays("after the agent died as a build started", true)
	getUntil(t, a.url("a", "/"), "hello v1 1m", 20*time.Second)
}

// childrenRunning lists the identities of the processes whose parent is
// pid and whose command line contains word.
func childrenRunning(pid int, word string) []procgroup.Identity {
	var out []procgroup.Identity
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cmd, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil || !strings.Contains(string(cmd), word) {
			continue
		}
		n, _ := strconv.Atoi(filepath.Base(p))
		if st, err := os.ReadFile(filepath.Join(p, "stat")); err == nil {
			f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
			if id, err := procgroup.Lookup(n); err == nil && len(f) > 1 && f[1] == strconv.Itoa(pid) {
				out = append(out, id)
			}
		}
	}
	return out
}

// TestKill9DuringAFollowCheckLeavesNoGit: the git ls-remote of a follow
// check (here against an upstream that takes two minutes to answer) is
// recorded like a deploy's commands, so the next agent after a kill -9
// ends it.
func TestKill9DuringAFollowCheckLeavesNoGit(t *testing.T) {
	root := t.TempDir()
	sampleRepo(t, root)
	url := testkit.GitHTTPServer(t, root, testkit.WithDelay(2*time.Minute)) + "/app.git"
	a := newAgent(t)
	a.start(fastDeploys...)
	cmd := exec.Command(binary, "preview", url, "main", "--slot", "b")
	cmd.Env = a.env
	client, err := reaper.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	var lsRemote []procgroup.Identity
	for deadline := time.Now().Add(20 * time.Second); len(lsRemote) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no git ls-remote ran\n%s", a.stderr())
		}
		lsRemote = childrenRunning(a.child.Pid, "ls-remote")
	}
	t.Cleanup(func() {
		for _, id := range lsRemote {
			procgroup.KillGroup(id, syscall.SIGKILL)
		}
	})
	a.signal(syscall.SIGKILL)
	a.wait(5 * time.Second)
	<-client.Done()
	if !slices.ContainsFunc(lsRemote, procgroup.Identity.Alive) {
		t.Fatal("git ls-remote died with the agent: the test shows nothing")
	}
	a.start(fastDeploys...)
	for deadline := time.Now().Add(10 * time.Second); slices.ContainsFunc(lsRemote, procgroup.Identity.Alive); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the dead agent's git ls-remote %v still runs\n%s", lsRemote, a.stderr())
		}
	}
}
