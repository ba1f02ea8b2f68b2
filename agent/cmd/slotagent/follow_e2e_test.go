package main

// End-to-end tests of slots following a branch and of previews: a real
// agent, a bare repository as the upstream (pushed to by real git), a
// 1 s interval.

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/follow"
)

// followStatus is GET /api/slots/{slot}/follow.
func (a *agent) followStatus(slot string) follow.Status {
	a.t.Helper()
	var st follow.Status
	a.apiJSON("/api/slots/"+slot+"/follow", &st)
	return st
}

// waitFollow waits until the slot's following satisfies ok.
func (a *agent) waitFollow(slot, what string, ok func(follow.Status) bool) follow.Status {
	a.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st := a.followStatus(slot)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("slot %s: %s: not within 90s; last status %+v\nagent log:\n%s", slot, what, st, a.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitServes waits until the slot answers "hello VERSION".
func (a *agent) waitServes(slot, version string) time.Time {
	a.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if code, b := body(a.t, a.url(slot, "/")); code == 200 && strings.HasPrefix(b, "hello "+version+" ") {
			return time.Now()
		}
		if time.Now().After(deadline) {
			_, b := body(a.t, a.url(slot, "/"))
			a.t.Fatalf("slot %s does not serve %s within 90s (serves %q)\nagent log:\n%s", slot, version, b, a.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// slotDeploys lists a slot's deploy records, newest first.
func (a *agent) slotDeploys(slot string) []admin.DeployRecord {
	var list admin.DeployList
	a.apiJSON("/api/slots/"+slot+"/deploys", &list)
	return list.Deploys
}

// settled lists a slot's deploy records once none runs (an app serves
// before its deploy ends: the old one drains).
func (a *agent) settled(slot string) []admin.DeployRecord {
	a.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		recs := a.slotDeploys(slot)
		if !slices.ContainsFunc(recs, func(r admin.DeployRecord) bool { return r.Status == deploy.Running }) {
			return recs
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("slot %s: a deploy still runs after 60s: %+v", slot, recs[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// followCommits are the commits of the slot's follow deploys, oldest first.
func followCommits(recs []admin.DeployRecord) []string {
	var out []string
	for _, r := range slices.Backward(recs) {
		if r.Trigger == deploy.TriggerFollow {
			out = append(out, r.Commit)
		}
	}
	return out
}

// push commits server.js at version and pushes main; it returns the commit.
func push(t *testing.T, work, bare, version string) string {
	t.Helper()
	setVersion(t, work, version)
	commitAndPush(t, work, bare, version)
	return gitRun(t, work, "rev-parse", "HEAD")
}

// TestFollowDeploysTheBranch: a slot that follows main deploys each push
// within an interval; commits pushed during a deploy deploy once, only
// the newest; a broken commit is not served nor retried and the status
// says why; the fix is served; the upstream gone backs off, deploys
// nothing and recovers; after kill -9 the new agent still follows and
// does not redeploy what serves.
func TestFollowDeploysTheBranch(t *testing.T) {
	a := newAgent(t)
	bare, work := sampleRepo(t, t.TempDir())
	a.start(fastDeploys...)
	a.mustCLI("deploy", "a", "--repo", bare, "--ref", "main", "--wait")
	v1 := gitRun(t, work, "rev-parse", "HEAD")

	out := a.mustCLI("follow", "a", "--interval", "1s")
	if !strings.Contains(out, "slot a follows main of "+bare+" every 1s") {
		t.Fatalf("follow output: %s", out)
	}
	a.waitFollow("a", "up to date", func(s follow.Status) bool {
		return s.State == follow.StateFollowing && s.Tip == v1 && strings.HasPrefix(s.Message, "serving "+v1[:12])
	})
	if status := a.mustCLI("status"); !strings.Contains(status, "slot a follows main of "+bare+" every 1s: following: serving") {
		t.Fatalf("status does not show the following:\n%s", status)
	}

	// A push is deployed within one interval (+ the deploy's own time).
	v2 := push(t, work, bare, "v2")
	pushed := time.Now()
	a.waitServes("a", "v2")
	recs := a.settled("a")
	if r := recs[0]; r.Trigger != deploy.TriggerFollow || r.Commit != v2 || r.Previous != v1 || r.Ref != "main" || r.Status != deploy.Succeeded {
		t.Fatalf("follow deploy record: %+v", r)
	}
	// The interval with its jitter, and a second for the check itself
	// (git ls-remote on a loaded machine, under -race).
	if lag := recs[0].CreatedAt.Sub(pushed); lag > 1100*time.Millisecond+time.Second {
		t.Errorf("the follow deploy began %s after the push (interval 1s)", lag)
	}

	// Commits pushed while a follow deploy runs: only the newest follows.
	// v3 listens 2.5 s after its start, so its deploy is still running
	// when v4 and v5 are pushed.
	slow := "setTimeout(() => {\n" + strings.Replace(sampleServer, "'v1'", "'v3'", 1) + "}, 2500);\n"
	writeFile(t, filepath.Join(work, "server.js"), slow)
	commitAndPush(t, work, bare, "v3")
	v3 := gitRun(t, work, "rev-parse", "HEAD")
	deadline := time.Now().Add(60 * time.Second)
	for r := a.slotDeploys("a")[0]; r.Commit != v3 || r.Status != deploy.Running; r = a.slotDeploys("a")[0] {
		if time.Now().After(deadline) {
			t.Fatalf("no running follow deploy of v3: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	v4 := push(t, work, bare, "v4")
	v5 := push(t, work, bare, "v5")
	if r := a.slotDeploys("a")[0]; r.Commit != v3 || r.Status != deploy.Running {
		t.Fatalf("the deploy of v3 ended before v4 and v5 were pushed (%+v): the test cannot show the wait", r)
	}
	a.waitServes("a", "v5")
	if got, want := followCommits(a.settled("a")), []string{v2, v3, v5}; !slices.Equal(got, want) {
		t.Fatalf("follow deploys %v, want %v (v4 %s must not deploy)", got, want, v4)
	}

	// A broken commit: not served, not retried, the status says why.
	writeFile(t, filepath.Join(work, "server.js"), "process.exit(3)\n")
	commitAndPush(t, work, bare, "broken")
	broken := gitRun(t, work, "rev-parse", "HEAD")
	st := a.waitFollow("a", "waiting after the failed deploy", func(s follow.Status) bool { return s.State == follow.StateWaiting })
	if want := "waiting for a new commit after a failed deploy of " + broken[:12]; st.Message != want || st.FailedCommit != broken {
		t.Fatalf("status after a failed deploy: %+v, want %q", st, want)
	}
	first := st.LastCheck
	a.waitFollow("a", "two more checks", func(s follow.Status) bool { return s.LastCheck.Sub(first) > 1500*time.Millisecond })
	if got := followCommits(a.slotDeploys("a")); slices.Index(got, broken) != len(got)-1 || len(got) != 4 {
		t.Fatalf("follow deploys %v: the broken commit %s must be tried once", got, broken)
	}
	if r := a.settled("a")[0]; r.Status != deploy.Failed {
		t.Fatalf("broken commit's deploy: %+v", r)
	}
	a.waitServes("a", "v5")
	v6 := push(t, work, bare, "v6")
	a.waitServes("a", "v6")
	a.settled("a")

	// The upstream moves away: backoff, shown, nothing deployed; back: recovery.
	moved := bare + ".moved"
	if err := os.Rename(bare, moved); err != nil {
		t.Fatal(err)
	}
	before := len(a.slotDeploys("a"))
	st = a.waitFollow("a", "backoff", func(s follow.Status) bool { return s.State == follow.StateBackoff && s.Failures >= 2 })
	if !strings.Contains(st.Message, "cannot check branch main") || !strings.Contains(st.Message, "failed in a row; next try in") {
		t.Fatalf("backoff status: %+v", st)
	}
	if gap := st.NextCheck.Sub(st.LastCheck); gap < 1900*time.Millisecond {
		t.Errorf("after %d failures the next check comes %s after the last: no backoff", st.Failures, gap)
	}
	if status := a.mustCLI("status"); !strings.Contains(status, "backoff: cannot check branch main") {
		t.Fatalf("status does not show the backoff:\n%s", status)
	}
	if err := os.Rename(moved, bare); err != nil {
		t.Fatal(err)
	}
	a.waitFollow("a", "recovery", func(s follow.Status) bool { return s.State == follow.StateFollowing && s.Failures == 0 && s.Tip == v6 })
	if n := len(a.slotDeploys("a")); n != before {
		t.Fatalf("%d deploys while the upstream was away", n-before)
	}

	// kill -9: the new agent follows on and does not redeploy v6.
	a.signal(syscall.SIGKILL)
	a.wait(5 * time.Second)
	a.start(fastDeploys...)
	a.waitServes("a", "v6")
	a.waitFollow("a", "following after kill -9", func(s follow.Status) bool {
		return s.State == follow.StateFollowing && strings.HasPrefix(s.Message, "serving "+v6[:12])
	})
	if n := len(a.slotDeploys("a")); n != before {
		t.Fatalf("the new agent deployed %d times what served already", n-before)
	}
	push(t, work, bare, "v7")
	a.waitServes("a", "v7")
}

// TestFollowPausesWhenTheUserTakesControl: a rollback pauses following
// (slot b, following the same repository, proves the new commit was
// there to take); resume deploys the tip; a manual deploy and a stop
// pause too; --off stops following; bad input changes nothing.
func TestFollowPausesWhenTheUserTakesControl(t *testing.T) {
	a := newAgent(t)
	bare, work := sampleRepo(t, t.TempDir())
	a.start(fastDeploys...)
	a.mustCLI("deploy", "a", "--repo", bare, "--ref", "main", "--wait")
	a.mustCLI("follow", "a", "--interval", "1s")
	push(t, work, bare, "v2")
	a.waitServes("a", "v2")
	a.settled("a")

	a.mustCLI("rollback", "a", "--wait")
	a.waitServes("a", "v1")
	st := a.waitFollow("a", "paused by the rollback", func(s follow.Status) bool { return s.State == follow.StatePaused })
	if !strings.Contains(st.Message, "paused: rollback a-") || !strings.Contains(st.Message, "slotagent follow a") {
		t.Fatalf("pause message: %q", st.Message)
	}
	if out := a.mustCLI("status"); !strings.Contains(out, "paused: rollback a-") {
		t.Fatalf("status does not show the pause:\n%s", out)
	}
	// The slot's page shows it, with a one-click resume.
	if code, page := body(t, a.url("admin", "/slots/a?part=part-status")); code != 200 ||
		!strings.Contains(page, `<span class="badge st-paused">paused</span> follows <code>main</code>`) ||
		!strings.Contains(page, `data-follow="on">Resume following</button>`) {
		t.Fatalf("slot page status: %d\n%s", code, page)
	}
	// Slot b follows the same repository: once it serves v3, slot a has
	// had checks in which to take it.
	if _, errOut, code := a.cli("follow", "b"); code == 0 || !strings.Contains(errOut, "slot b serves no release from a git repository") {
		t.Fatalf("follow of an empty slot: %d %s", code, errOut)
	}
	out := a.mustCLI("preview", bare, "main", "--slot", "b", "--interval", "1s")
	if !strings.Contains(out, "slot b previews branch main at https://slot-b--dev--alice.example.com") {
		t.Fatalf("preview output: %s", out)
	}
	a.waitServes("b", "v2")
	push(t, work, bare, "v3")
	a.waitServes("b", "v3")
	a.waitFollow("a", "more checks while paused", func(s follow.Status) bool { return s.State == follow.StatePaused })
	if code, b := body(t, a.url("a", "/")); code != 200 || !strings.HasPrefix(b, "hello v1 ") {
		t.Fatalf("the paused slot a serves %d %q after the rollback", code, b)
	}

	a.mustCLI("follow", "a")
	a.waitServes("a", "v3")
	a.waitFollow("a", "following after resume", func(s follow.Status) bool { return s.State == follow.StateFollowing })
	a.settled("a")
	a.settled("b")

	// A manual deploy pauses too, as does a stop.
	a.mustCLI("deploy", "a", "--repo", bare, "--ref", "main", "--env", "X=1", "--wait")
	a.waitFollow("a", "paused by a deploy", func(s follow.Status) bool {
		return s.State == follow.StatePaused && strings.Contains(s.Message, "paused: deploy a-")
	})
	a.mustCLI("follow", "b")
	a.mustCLI("stop", "b")
	a.waitFollow("b", "paused by a stop", func(s follow.Status) bool {
		return s.Message == "paused: the slot was stopped (resume with slotagent follow b)"
	})

	// Bad input: a clear error, nothing changed.
	for _, args := range [][]string{
		{"follow", "a", "--branch", "-x"},
		{"follow", "a", "--branch", "refs/heads/main"},
		{"follow", "a", "--interval", "10ms"},
		{"follow", "a", "--off", "--branch", "main"},
		{"follow", "z"},
		{"preview", "--", "-uhack", "main"},
		{"preview", bare, "a..b"},
	} {
		before := a.followStatus("a")
		_, errOut, code := a.cli(args...)
		if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("slotagent %v: exit %d, %q: want one line and a failure", args, code, errOut)
		}
		if after := a.followStatus("a"); after.Branch != before.Branch || after.Interval != before.Interval || after.State != before.State {
			t.Errorf("slotagent %v changed slot a's following: %+v -> %+v", args, before, after)
		}
	}

	a.mustCLI("follow", "a", "--off")
	if st := a.followStatus("a"); st.On {
		t.Fatalf("following after --off: %+v", st)
	}
	if code, ans := controlPost(t, a, "/api/slots/a/follow/check", map[string]any{}); code != 409 || !strings.Contains(ans, "does not follow a branch") {
		t.Fatalf("check of a slot that follows nothing: %d %s", code, ans)
	}
}

// TestPreviews: two branches in two free slots; a third slot taken; with
// no free slot a clear error saying what each slot holds; a branch
// deleted upstream stops its slot's following (and with
// --release-on-delete frees the slot).
func TestPreviews(t *testing.T) {
	a := newAgent(t)
	bare, work := sampleRepo(t, t.TempDir())
	a.start(fastDeploys...)
	for _, br := range []string{"feat-x", "feat-y"} {
		gitRun(t, work, "checkout", "-q", "-b", br)
		setVersion(t, work, br)
		gitRun(t, work, "commit", "-q", "-am", br)
		gitRun(t, work, "push", "-q", bare, br)
	}
	gitRun(t, work, "checkout", "-q", "main")

	out := a.mustCLI("preview", bare, "feat-x", "--interval", "1s")
	if !strings.Contains(out, "slot a previews branch feat-x") {
		t.Fatalf("preview: %s", out)
	}
	out = a.mustCLI("preview", bare, "feat-y", "--interval", "1s", "--release-on-delete")
	if !strings.Contains(out, "slot b previews branch feat-y") {
		t.Fatalf("preview: %s", out)
	}
	a.waitServes("a", "feat-x")
	a.waitServes("b", "feat-y")
	if r := a.slotDeploys("b")[0]; r.Trigger != deploy.TriggerFollow || r.Ref != "feat-y" {
		t.Fatalf("preview deploy: %+v", r)
	}
	for _, s := range []string{"c", "d", "e"} {
		a.mustCLI("deploy", s, "--repo", bare, "--wait")
	}
	_, errOut, code := a.cli("preview", bare, "main")
	for _, want := range []string{"no free slot", "a: serves " + bare + " feat-x", "follows branch feat-x of " + bare, "c: serves " + bare, "name one with --slot"} {
		if code == 0 || !strings.Contains(errOut, want) {
			t.Fatalf("preview with no free slot: %d %q, want %q", code, errOut, want)
		}
	}

	// Delete both branches upstream.
	gitRun(t, bare, "branch", "-D", "feat-x", "feat-y")
	st := a.waitFollow("a", "stopped", func(s follow.Status) bool { return s.State == follow.StatePaused })
	if want := "stopped: branch feat-x was deleted upstream (" + bare + " no longer lists it)"; st.Message != want {
		t.Fatalf("slot a after its branch was deleted: %q, want %q", st.Message, want)
	}
	a.waitServes("a", "feat-x") // it keeps serving
	a.waitFollow("b", "released", func(s follow.Status) bool { return !s.On })
	deadline := time.Now().Add(30 * time.Second)
	for code, b := body(t, a.url("b", "/")); !strings.Contains(b, "slot-b--dev--alice.example.com"); code, b = body(t, a.url("b", "/")) {
		if time.Now().After(deadline) {
			t.Fatalf("slot b is not back to its placeholder: %d %q", code, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// b is free again: the next preview takes it.
	out = a.mustCLI("preview", bare, "main", "--interval", "1s")
	if !strings.Contains(out, "slot b previews branch main") {
		t.Fatalf("preview after b was released: %s", out)
	}
	a.waitServes("b", "v1")
}
