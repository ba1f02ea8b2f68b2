package deploy

// In-process tests of the deploy engine: a real supervisor, a real slot
// port, real Node.js apps deployed from folders, and a state file saved
// with package state as the agent saves it.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/logs"
	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/slot"
	"github.com/coder-slots/coder-slots/agent/state"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

func TestMain(m *testing.M) {
	if err := reaper.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// fileStore is the agent's state as daemon keeps it: a change is made on a
// copy and saved before it replaces the state in memory.
type fileStore struct {
	path string
	mu   sync.Mutex
	st   *state.State
	// onRead, when set, is called (once, then cleared) after a read,
	// before the reader gets what it read.
	onRead func()
}

func (f *fileStore) Slot(name string) state.Slot {
	f.mu.Lock()
	var ss state.Slot
	if f.st.Slots[name] != nil {
		ss = *f.st.Clone().Slots[name]
	}
	hook := f.onRead
	f.onRead = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return ss
}

func (f *fileStore) KeptReleases() []state.Release {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Clone().KeptReleases()
}

// readHook arms the store's onRead.
func (e *engine) readHook(f func()) {
	e.store.mu.Lock()
	e.store.onRead = f
	e.store.mu.Unlock()
}

func (f *fileStore) UpdateSlot(name string, change func(*state.Slot)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	next := f.st.Clone()
	if next.Slots[name] == nil {
		next.Slots[name] = &state.Slot{Desired: state.DesiredPlaceholder}
	}
	change(next.Slots[name])
	if err := state.Save(f.path, next); err != nil {
		return err
	}
	f.st = next
	return nil
}

// engine is a deployer of one slot, "a".
type engine struct {
	d     *Deployer
	sup   *supervisor.Supervisor
	store *fileStore
	slot  *slot.Slot
	url   string // the slot's public address
	data  string
	// slow is how long wait waits for a deploy (0: 60 s); a real
	// toolchain's first install may take longer on a loaded machine.
	slow time.Duration
}

// newEngine makes a deployer of slot a in a fresh data dir; tune may
// change its config.
func newEngine(t *testing.T, tune func(*Config)) *engine {
	t.Helper()
	return newEngineWithDB(t, tune, nil)
}

// newEngineWithDB is newEngine whose slot gives its apps dbEnv as their
// database's env.
func newEngineWithDB(t *testing.T, tune func(*Config), dbEnv map[string]string) *engine {
	t.Helper()
	return newEngineAt(t, t.TempDir(), tune, dbEnv)
}

// newEngineAt is newEngineWithDB with data as the data dir.
func newEngineAt(t *testing.T, data string, tune func(*Config), dbEnv map[string]string) *engine {
	t.Helper()
	testkit.NeedNode(t)
	sup := supervisor.New(filepath.Join(data, "logs"), logs.Options{}, 0)
	pol := supervisor.DefaultPolicy()
	pol.KillTimeout = 2 * time.Second
	s, err := slot.Listen(slot.Config{Name: "a", Bind: "127.0.0.1", Port: testkit.FreePort(t), Policy: pol, BaseEnv: os.Environ(), DBEnv: dbEnv}, sup)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig(data)
	cfg.Health = HealthConfig{ListenTimeout: 10 * time.Second, Attempts: 5, Interval: 100 * time.Millisecond, Timeout: 2 * time.Second}
	cfg.Drain = 5 * time.Second
	if tune != nil {
		tune(&cfg)
	}
	store := &fileStore{path: filepath.Join(data, "state.json"), st: state.New()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := New(cfg, func(name string) *slot.Slot {
		if name == "a" {
			return s
		}
		return nil
	}, store, []string{"a"}, true, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Close(10 * time.Second)
		s.Stop(time.Second)
		_ = s.Shutdown(t.Context())
		sup.Close(time.Second)
	})
	return &engine{d: d, sup: sup, store: store, slot: s, url: "http://" + s.Addr().String(), data: data}
}

// appServer answers every request with its VERSION env value.
const appServer = `require('http').createServer((req, res) => res.end(process.env.VERSION || 'none'))
  .listen(Number(process.env.PORT), '127.0.0.1');
`

// codeServer answers with its code's label and its VERSION env value.
func codeServer(label string) string {
	return `require('http').createServer((req, res) => res.end('` + label + ` ' + (process.env.VERSION || 'none')))
  .listen(Number(process.env.PORT), '127.0.0.1');
`
}

// appDir writes the app into a fresh folder.
func appDir(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "server.js"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// deploy deploys the folder with env and waits for the deploy to end.
func (e *engine) deploy(t *testing.T, dir string, env map[string]string) Record {
	t.Helper()
	rec, err := e.d.Deploy("a", Request{Dir: dir, Start: "node server.js", Env: env})
	if err != nil {
		t.Fatal(err)
	}
	return e.wait(t, rec.ID)
}

// wait waits until the deploy id has ended and returns its record.
func (e *engine) wait(t *testing.T, id string) Record {
	t.Helper()
	limit := cmp.Or(e.slow, 60*time.Second)
	deadline := time.Now().Add(limit)
	for {
		rec, ok := e.d.Get(id)
		if !ok {
			t.Fatalf("no record %s", id)
		}
		if rec.Status != Running {
			if _, busy := e.d.holder("a"); !busy {
				return rec
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("deploy %s still %s after %s", id, rec.Status, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStage waits until the deploy id has finished a stage (it has read
// the state it builds on by then).
func (e *engine) waitStage(t *testing.T, id string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if r, _ := e.d.Get(id); len(r.Stages) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("deploy %s never finished a stage", id)
		}
	}
}

// serves returns what the slot answers.
func (e *engine) serves(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDeploysDoNotLeakGoroutines: a workspace that deploys on every push
// for months must not grow; each deploy's log used to leave lumberjack's
// goroutines behind.
func TestDeploysDoNotLeakGoroutines(t *testing.T) {
	e := newEngine(t, nil)
	dir := appDir(t, appServer)
	if rec := e.deploy(t, dir, map[string]string{"VERSION": "warm-up"}); rec.Status != Succeeded {
		t.Fatalf("deploy: %s %s", rec.Status, rec.Error)
	}
	before := runtime.NumGoroutine()
	const deploys = 50
	for i := range deploys {
		if rec := e.deploy(t, dir, map[string]string{"VERSION": fmt.Sprint(i)}); rec.Status != Succeeded {
			t.Fatalf("deploy %d: %s %s", i, rec.Status, rec.Error)
		}
	}
	if got := e.serves(t); got != fmt.Sprint(deploys-1) {
		t.Fatalf("slot serves %q", got)
	}
	// Connections to stopped apps close asynchronously: wait for the count
	// to settle, allowing a few goroutines of work still winding down.
	http.DefaultClient.CloseIdleConnections()
	const slack = 5
	after := runtime.NumGoroutine()
	for deadline := time.Now().Add(10 * time.Second); after > before+slack && time.Now().Before(deadline); after = runtime.NumGoroutine() {
		time.Sleep(50 * time.Millisecond)
	}
	if after > before+slack {
		t.Fatalf("goroutines: %d before %d deploys, %d after", before, deploys, after)
	}
	t.Logf("goroutines: %d before %d deploys, %d after", before, deploys, after)
}

// TestCloseWaitsForEveryAcceptedDeploy: a deploy accepted just before
// Close is waited for; it does not run on after Close returns.
func TestCloseWaitsForEveryAcceptedDeploy(t *testing.T) {
	e := newEngine(t, nil)
	closed := make(chan struct{})
	// Close starts while the accepted deploy reads the slot's state.
	e.readHook(func() {
		go func() {
			e.d.Close(30 * time.Second)
			close(closed)
		}()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			e.d.mu.Lock()
			c := e.d.closed
			e.d.mu.Unlock()
			if c {
				return
			}
			if time.Now().After(deadline) {
				t.Error("Close did not begin")
				return
			}
		}
	})
	rec, err := e.d.Deploy("a", Request{Dir: appDir(t, appServer), Start: "node server.js"})
	if err != nil {
		t.Fatal(err)
	}
	<-closed
	if got, _ := e.d.Get(rec.ID); got.Status == Running {
		t.Fatalf("deploy %s still running after Close returned", rec.ID)
	}
}

// TestExclusiveAndDeploysExcludeEachOther: a function run by Exclusive
// and a deploy never overlap on a slot; either is refused with ErrBusy.
func TestExclusiveAndDeploysExcludeEachOther(t *testing.T) {
	e := newEngine(t, nil)
	dir := appDir(t, appServer)
	inside := make(chan struct{})
	leave := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		result <- e.d.Exclusive("a", "stop", func() error {
			close(inside)
			<-leave
			return nil
		})
	}()
	<-inside
	_, err := e.d.Deploy("a", Request{Dir: dir, Start: "node server.js"})
	var busy ErrBusy
	if !errors.As(err, &busy) || busy.Running != "stop" {
		t.Fatalf("deploy during an exclusive call: %v", err)
	}
	if _, _, err := e.d.SetEnv("a", map[string]string{"K": "v"}, nil, "cli"); !errors.As(err, &busy) {
		t.Fatalf("env change during an exclusive call: %v", err)
	}
	close(leave)
	if err := <-result; err != nil {
		t.Fatal(err)
	}

	rec, err := e.d.Deploy("a", Request{Dir: dir, Start: "node server.js"})
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	if err := e.d.Exclusive("a", "stop", func() error { ran = true; return nil }); !errors.As(err, &busy) || busy.Running != rec.ID || ran {
		t.Fatalf("exclusive call during a deploy: ran %v, %v", ran, err)
	}
	e.wait(t, rec.ID)
	if err := e.d.Exclusive("a", "stop", func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("exclusive call after the deploy: ran %v, %v", ran, err)
	}
}

// TestEnvChangeReadsTheStateItChanges: an env change asked for while a
// deploy runs never rebuilds from the code that deploy replaces (a silent
// rollback): it is refused, or made from the new code.
func TestEnvChangeReadsTheStateItChanges(t *testing.T) {
	e := newEngine(t, nil)
	if rec := e.deploy(t, appDir(t, codeServer("old")), nil); rec.Status != Succeeded {
		t.Fatalf("deploy: %s %s", rec.Status, rec.Error)
	}
	if e.raceADeploy(t, "new", func() (string, error) {
		_, rec, err := e.d.SetEnv("a", map[string]string{"VERSION": "v2"}, nil, "cli")
		if err != nil {
			return "", err
		}
		return rec.ID, nil
	}) {
		if got := e.serves(t); got != "new v2" {
			t.Fatalf("after the env change the slot serves %q, not the new code", got)
		}
	} else if got := e.serves(t); got != "new none" {
		t.Fatalf("after the deploy the slot serves %q", got)
	}
}

// raceADeploy deploys the code labelled label and, once that deploy has
// read the state it builds on, runs change, with the deploy ending right
// after change has read the state. It reports whether change ran (else it
// was refused as busy); its job, and the deploy, have ended.
func (e *engine) raceADeploy(t *testing.T, label string, change func() (string, error)) bool {
	t.Helper()
	rec, err := e.d.Deploy("a", Request{Dir: appDir(t, codeServer(label)), Start: "node server.js"})
	if err != nil {
		t.Fatal(err)
	}
	e.waitStage(t, rec.ID)
	e.readHook(func() { e.wait(t, rec.ID) })
	id, err := change()
	var busy ErrBusy
	if errors.As(err, &busy) {
		e.wait(t, rec.ID)
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	if r := e.wait(t, id); r.Status != Succeeded {
		t.Fatalf("%s: %s %s", r.Trigger, r.Status, r.Error)
	}
	return true
}

// smallFS mounts a tmpfs of size bytes on a new folder (root only) and
// returns it; readOnly remounts it read-only.
func smallFS(t *testing.T, size int) (dir string, readOnly func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir = t.TempDir()
	// Children are waited for through the reaper: it reaps every child of
	// this process.
	mount := func(args ...string) {
		t.Helper()
		var out strings.Builder
		if err := reaper.RunTo(t.Context(), exec.Command("mount", args...), &out, &out); err != nil {
			t.Fatalf("mount %v: %v\n%s", args, err, out.String())
		}
	}
	mount("-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir)
	t.Cleanup(func() {
		var out strings.Builder
		if err := reaper.RunTo(context.Background(), exec.Command("umount", "--lazy", dir), &out, &out); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out.String())
		}
	})
	return dir, func() { mount("-o", "remount,ro", dir) }
}

// releaseDirs lists the release folders of slot a.
func (e *engine) releaseDirs(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(e.d.releasesDir("a"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

// snapshot is what a failed deploy must leave as it was: what the slot
// serves, the state file and the release folders.
type snapshot struct {
	serves, state string
	releases      []string
}

func (e *engine) snapshot(t *testing.T) snapshot {
	t.Helper()
	b, err := os.ReadFile(e.store.path)
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{serves: e.serves(t), state: string(b), releases: e.releaseDirs(t)}
}

// failed checks that rec failed with want in its error and changed nothing.
func (e *engine) failed(t *testing.T, rec Record, want string, before snapshot) {
	t.Helper()
	if rec.Status != Failed || !strings.Contains(rec.Error, want) {
		t.Fatalf("deploy: %s %q, want failed with %q", rec.Status, rec.Error, want)
	}
	if now := e.snapshot(t); now.serves != before.serves || now.state != before.state || !slices.Equal(now.releases, before.releases) {
		t.Fatalf("the failed deploy changed things:\nbefore %+v\nafter  %+v", before, now)
	}
}

// TestFailedStateSaveGivesTheTrafficBack: when the state cannot be saved
// after the swap, the previous release serves again, the state file and
// the release folders are as before, and no candidate runs on.
func TestFailedStateSaveGivesTheTrafficBack(t *testing.T) {
	e := newEngine(t, nil)
	stateDir, readOnly := smallFS(t, 1<<20)
	e.store.path = filepath.Join(stateDir, "state.json")
	dir := appDir(t, appServer)
	first := e.deploy(t, dir, map[string]string{"VERSION": "one"})
	if first.Status != Succeeded {
		t.Fatalf("deploy: %s %s", first.Status, first.Error)
	}
	before := e.snapshot(t)
	readOnly() // nothing but the save after the swap writes there
	e.failed(t, e.deploy(t, dir, map[string]string{"VERSION": "two"}), "read-only file system", before)
	if ss := e.store.Slot("a"); ss.Current != first.Release {
		t.Fatalf("state names %s, not %s", ss.Current, first.Release)
	}
	if procs := e.sup.List(); len(procs) != 1 || procs[0].Info().Status != supervisor.Online {
		t.Fatalf("processes after the failed save: %d", len(procs))
	}
}

// fill writes a file into dir until its file system has at most free
// bytes left.
func fill(t *testing.T, dir string, free int64) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	size := int64(st.Bavail)*st.Bsize - free
	if size <= 0 {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, "filler"), make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestFullDiskFailsTheDeployAndChangesNothing: a deploy into a full disk
// fails with the reason; the old release serves, the state is as it was
// and no half-made release is left.
func TestFullDiskFailsTheDeployAndChangesNothing(t *testing.T) {
	data, _ := smallFS(t, 8<<20)
	e := newEngineAt(t, data, nil, nil)
	first := e.deploy(t, appDir(t, appServer), map[string]string{"VERSION": "one"})
	if first.Status != Succeeded {
		t.Fatalf("deploy: %s %s", first.Status, first.Error)
	}
	before := e.snapshot(t)
	// The new release carries 2 MiB of assets; the disk has 256 KiB left.
	big := appDir(t, appServer)
	if err := os.WriteFile(filepath.Join(big, "assets.bin"), make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	fill(t, data, 256<<10)
	e.failed(t, e.deploy(t, big, map[string]string{"VERSION": "two"}), "no space left on device", before)
}

// TestUnwritableRecordLeavesNothing: a deploy whose record cannot be
// written is refused and leaves no log files and no reservation behind.
func TestUnwritableRecordLeavesNothing(t *testing.T) {
	e := newEngine(t, nil)
	recDir := filepath.Join(e.data, "deploys", "a")
	if err := os.MkdirAll(recDir, 0o700); err != nil {
		t.Fatal(err)
	}
	fs, _ := smallFS(t, 64<<10)
	var out strings.Builder
	if err := reaper.RunTo(t.Context(), exec.Command("mount", "--bind", fs, recDir), &out, &out); err != nil {
		t.Fatalf("mount --bind: %v\n%s", err, out.String())
	}
	t.Cleanup(func() {
		var out strings.Builder
		if err := reaper.RunTo(context.Background(), exec.Command("umount", "--lazy", recDir), &out, &out); err != nil {
			t.Errorf("umount %s: %v\n%s", recDir, err, out.String())
		}
	})
	fill(t, recDir, 0)
	_, err := e.d.Deploy("a", Request{Dir: appDir(t, appServer), Start: "node server.js"})
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("deploy with a full records folder: %v", err)
	}
	entries, err := os.ReadDir(recDir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "filler" {
		t.Fatalf("records folder after the refused deploy: %v %v", entries, err)
	}
	if id, busy := e.d.holder("a"); busy {
		t.Fatalf("slot still reserved by %s", id)
	}
}

// TestRollbackReadsTheStateItChanges: a rollback asked for while a deploy
// runs never targets a release that deploy prunes: it is refused, or
// rolls back to a release that is kept.
func TestRollbackReadsTheStateItChanges(t *testing.T) {
	e := newEngine(t, func(c *Config) { c.KeepReleases = 2 })
	for _, label := range []string{"one", "two"} {
		if rec := e.deploy(t, appDir(t, codeServer(label)), nil); rec.Status != Succeeded {
			t.Fatalf("deploy %s: %s %s", label, rec.Status, rec.Error)
		}
	}
	// The rollback's target is release one, which the next deploy prunes.
	if e.raceADeploy(t, "three", func() (string, error) {
		rec, err := e.d.Rollback("a", "", "cli")
		return rec.ID, err
	}) {
		if got := e.serves(t); got != "two none" {
			t.Fatalf("after the rollback the slot serves %q", got)
		}
	}
}

// TestRollbackGoesBackToWhatServedBefore: after a rollback and an env
// change, a rollback undoes the env change (the code rolled back to, with
// the env from before) rather than bringing back the code rolled away
// from; two rollbacks in a row go back and forth.
func TestRollbackGoesBackToWhatServedBefore(t *testing.T) {
	e := newEngine(t, nil)
	for _, label := range []string{"one", "two"} {
		if rec := e.deploy(t, appDir(t, codeServer(label)), nil); rec.Status != Succeeded {
			t.Fatalf("deploy %s: %s %s", label, rec.Status, rec.Error)
		}
	}
	rollback := func(want string) {
		t.Helper()
		rec, err := e.d.Rollback("a", "", "cli")
		if err != nil {
			t.Fatal(err)
		}
		if rec = e.wait(t, rec.ID); rec.Status != Succeeded {
			t.Fatalf("rollback: %s %s", rec.Status, rec.Error)
		}
		if got := e.serves(t); got != want {
			t.Fatalf("after the rollback the slot serves %q, want %q", got, want)
		}
	}
	rollback("one none")
	_, rec, err := e.d.SetEnv("a", map[string]string{"VERSION": "v2"}, nil, "cli")
	if err != nil {
		t.Fatal(err)
	}
	if r := e.wait(t, rec.ID); r.Status != Succeeded || e.serves(t) != "one v2" {
		t.Fatalf("env change: %s %s, serves %q", r.Status, r.Error, e.serves(t))
	}
	rollback("one none")
	rollback("one v2")
}
