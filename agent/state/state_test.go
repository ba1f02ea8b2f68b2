package state

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/procgroup"
)

func sample() *State {
	st := New()
	st.Agent = &procgroup.Identity{PID: 1234, StartTime: 5678}
	st.Groups["web-a"] = procgroup.Identity{PID: 2000, StartTime: 99}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st.Slots["a"] = &Slot{
		Desired: DesiredRunning,
		Current: "20260102-bbb",
		Env:     map[string]string{"FOO": "bar"},
		Releases: []Release{
			{ID: "20260101-aaa", Dir: "/data/a/releases/20260101-aaa", Command: "npm start", CreatedAt: at.Add(-time.Hour)},
			{
				ID: "20260102-bbb", Dir: "/data/a/releases/20260102-bbb", Command: "node server.js",
				Env: map[string]string{"FOO": "bar"}, CreatedAt: at,
				Repo: "https://example.com/x.git", Ref: "main", Commit: "bbbbbbb",
			},
		},
		Follow: &Follow{Repo: "https://example.com/x.git", Branch: "main", Interval: 30 * time.Second, Since: at},
		Push: &PendingPush{Deploy: "a-20260102-push", Release: "20260102-bbb", Branch: "main", Commit: "bbbbbbb",
			Desired: DesiredRunning, Current: "20260101-aaa", Env: map[string]string{"FOO": "old"}},
	}
	st.Slots["b"] = &Slot{Desired: DesiredPlaceholder}
	return st
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	want := sample()
	if err := Save(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	r, ok := got.Release("a", "20260101-aaa")
	if !ok || r.Command != "npm start" {
		t.Fatalf("Release(a, 20260101-aaa) = %+v, %v", r, ok)
	}
	for _, q := range [][2]string{{"a", "nope"}, {"nope", "20260101-aaa"}, {"b", ""}} {
		if _, ok := got.Release(q[0], q[1]); ok {
			t.Errorf("Release(%q, %q) found", q[0], q[1])
		}
	}
}

func TestSaveMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Save(path, New()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries after Save, want only the state file", len(entries))
	}
}

func TestSaveRefusesInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := Save(path, sample()); err != nil {
		t.Fatal(err)
	}
	bad := sample()
	bad.Slots["a"].Current = "missing"
	if err := Save(path, bad); err == nil {
		t.Fatal("Save of an invalid state succeeded")
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Slots["a"].Current != "20260102-bbb" {
		t.Fatalf("refused Save changed the file: current %q", got.Slots["a"].Current)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.json")
	if _, err := Load(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) error = %v, want fs.ErrNotExist", err)
	}
	for _, tc := range []struct{ content, want string }{
		{"", "invalid JSON"},
		{"garbage", "invalid JSON"},
		{`{"version":1,"slots":{`, "invalid JSON"},
		{`{"version":2,"slots":{}}`, "unsupported version 2"},
		{`{"slots":{}}`, "unsupported version 0"},
	} {
		path := filepath.Join(dir, "state.json")
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("Load(%q) error = %v; want it to name %s and say %q", tc.content, err, path, tc.want)
		}
	}
}

func TestLoadMakesMaps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte(`{"version":1,"slots":null}`), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Slots == nil || st.Groups == nil {
		t.Fatalf("Load left nil maps: %+v", st)
	}
}

func TestValidate(t *testing.T) {
	if err := Validate(sample()); err != nil {
		t.Fatalf("Validate(sample) = %v", err)
	}
	if err := Validate(New()); err != nil {
		t.Fatalf("Validate(New()) = %v", err)
	}
	for name, tc := range map[string]struct {
		mutate func(*State)
		want   string
	}{
		"current names no release":  {func(s *State) { s.Slots["a"].Current = "gone" }, `current release "gone"`},
		"current with no releases":  {func(s *State) { s.Slots["b"].Current = "x" }, `current release "x"`},
		"unknown desired":           {func(s *State) { s.Slots["b"].Desired = "stopped" }, `unknown desired state "stopped"`},
		"empty desired":             {func(s *State) { s.Slots["b"].Desired = "" }, `unknown desired state ""`},
		"duplicate release":         {func(s *State) { s.Slots["a"].Releases[1].ID = "20260101-aaa" }, "duplicate release ID"},
		"empty release ID":          {func(s *State) { s.Slots["a"].Releases[0].ID = "" }, "no ID"},
		"nil slot":                  {func(s *State) { s.Slots["c"] = nil }, `slot "c"`},
		"wrong version":             {func(s *State) { s.Version = 7 }, "version 7"},
		"pending push not current":  {func(s *State) { s.Slots["a"].Push.Release = "20260101-aaa" }, "pending push's release"},
		"pending push, no previous": {func(s *State) { s.Slots["a"].Push.Current = "gone" }, `previous release "gone"`},
		"pending push, desired":     {func(s *State) { s.Slots["a"].Push.Desired = "" }, "pending push: unknown desired state"},
	} {
		st := sample()
		tc.mutate(st)
		err := Validate(st)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want error containing %q", name, err, tc.want)
		}
	}
}

func TestClone(t *testing.T) {
	orig := sample()
	c := orig.Clone()
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("clone differs:\n got %+v\nwant %+v", c, orig)
	}
	c.Agent.PID = 1
	c.Groups["web-a"] = procgroup.Identity{}
	c.Slots["a"].Env["FOO"] = "changed"
	c.Slots["a"].Releases[1].Env["FOO"] = "changed"
	c.Slots["a"].Releases[0].ID = "changed"
	c.Slots["b"].Desired = DesiredRunning
	c.Slots["a"].Follow.Paused = "changed"
	c.Slots["a"].Push.Env["FOO"] = "changed"
	c.Slots["a"].Push.Current = "changed"
	c.Slots["new"] = &Slot{}
	if !reflect.DeepEqual(orig, sample()) {
		t.Fatalf("changing the clone changed the original: %+v", orig)
	}
	if New().Clone().Groups == nil {
		t.Fatal("clone of New has nil Groups")
	}
}

// Crash test: a child process saves states in a tight loop and is killed at
// random moments; the file must always load as a complete, valid state.

const (
	helperEnv     = "STATE_TEST_SAVE_LOOP"
	counterKey    = "N"
	crashRounds   = 30
	helperTimeout = 10 * time.Second
)

// counterState returns a valid state for counter n. Its size varies with n,
// and n is repeated in several places, so a torn or mixed file shows.
func counterState(n int) *State {
	st := New()
	v := strconv.Itoa(n)
	sl := &Slot{Desired: DesiredRunning, Env: map[string]string{counterKey: v}}
	for i := range n%7 + 1 {
		id := fmt.Sprintf("r%d-%d", n, i)
		sl.Releases = append(sl.Releases, Release{
			ID: id, Dir: "/releases/" + id, Command: "npm start",
			Env:       map[string]string{counterKey: v, "PAD": strings.Repeat("x", 100*i)},
			CreatedAt: time.Unix(int64(n), 0).UTC(),
		})
		sl.Current = id
	}
	st.Slots["s"] = sl
	return st
}

// checkCounterState checks that st is valid and consistent, and returns its
// counter.
func checkCounterState(st *State) (int, error) {
	if err := Validate(st); err != nil {
		return 0, err
	}
	sl := st.Slots["s"]
	if sl == nil {
		return 0, errors.New("no slot s")
	}
	v := sl.Env[counterKey]
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("bad counter %q", v)
	}
	if len(sl.Releases) != n%7+1 {
		return 0, fmt.Errorf("counter %d: %d releases, want %d", n, len(sl.Releases), n%7+1)
	}
	for _, r := range sl.Releases {
		if r.Env[counterKey] != v {
			return 0, fmt.Errorf("counter %d: release %s has counter %q", n, r.ID, r.Env[counterKey])
		}
	}
	return n, nil
}

// TestHelperSaveLoop is not a test: run as a child by TestSaveSurvivesKill,
// it loads the state file, then saves states with an increasing counter
// until killed, saying "ready" after the first Save.
func TestHelperSaveLoop(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper for TestSaveSurvivesKill")
	}
	st, err := Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	n, err := checkCounterState(st)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	for i := 0; ; i++ {
		n++
		if err := Save(path, counterState(n)); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		if i == 0 {
			fmt.Println("ready")
		}
	}
}

func TestSaveSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := Save(path, counterState(0)); err != nil {
		t.Fatal(err)
	}
	last, torn := 0, 0
	for round := range crashRounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSaveLoop$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+path)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan bool, 1)
		go func() {
			line, _ := bufio.NewReader(out).ReadString('\n')
			ready <- line == "ready\n"
		}()
		select {
		case ok := <-ready:
			if !ok {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("round %d: helper did not start: %s", round, stderr.String())
			}
		case <-time.After(helperTimeout):
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("round %d: helper not ready after %v: %s", round, helperTimeout, stderr.String())
		}
		time.Sleep(time.Duration(rand.IntN(20_000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: helper ended by itself (%v): %s", round, err, stderr.String())
		}

		st, err := Load(path)
		if err != nil {
			t.Fatalf("round %d: Load after kill: %v", round, err)
		}
		n, err := checkCounterState(st)
		if err != nil {
			t.Fatalf("round %d: state after kill: %v", round, err)
		}
		if n <= last {
			t.Fatalf("round %d: counter went from %d to %d", round, last, n)
		}
		last = n

		temps, _ := filepath.Glob(filepath.Join(dir, ".state.json.tmp-*"))
		entries, _ := os.ReadDir(dir)
		if len(temps) > 1 || len(entries) != 1+len(temps) {
			t.Fatalf("round %d: directory holds %d entries, %d temporary: %v", round, len(entries), len(temps), temps)
		}
		torn += len(temps)
	}
	t.Logf("%d kills, %d saves, %d kills left a temporary file", crashRounds, last, torn)
	if torn == 0 {
		t.Fatalf("no kill of %d landed in the middle of a Save: the test did not test a torn write", crashRounds)
	}

	// The next Save removes the leftover.
	if err := Save(path, counterState(last+1)); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("directory holds %d entries after a clean Save, want 1", len(entries))
	}
}
