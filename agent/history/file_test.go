package history

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// openTest opens the history of slot a in dir on a new clock whose wall
// reads wall, and collects the warnings.
func openTest(t *testing.T, dir string, wall time.Time) (*Slot, *fakeClock, *[]string) {
	t.Helper()
	c := &fakeClock{base: time.Now(), wall: wall}
	var warnings []string
	h := OpenWithClock(dir, []string{"a"}, c, func(msg string) { warnings = append(warnings, msg) })
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	return h.Slot("a"), c, &warnings
}

// TestFileSurvivesRestart: what one agent recorded, the next one (a new
// monotonic clock, five minutes later on the wall) reads at the same wall
// times, and goes on writing after it.
func TestFileSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	s, c, warnings := openTest(t, dir, start)
	c.advance(25 * time.Second) // bucket 2
	for range 7 {
		request(s, c, 200, time.Millisecond, false)
	}
	request(s, c, 500, time.Millisecond, false)
	s.Sample(12, 30<<20)
	s.Mark(Deploy, "a-20261129T120025000", "deploy", 0)
	s.Mark(Crash, "", strings.Repeat("long exit detail ", 10), 0)
	before := s.Read(Hour)
	if len(*warnings) != 0 {
		t.Fatalf("warnings on a new file: %v", *warnings)
	}

	s2, c2, warnings := openTest(t, dir, start.Add(25*time.Second+5*time.Minute))
	if len(*warnings) != 0 {
		t.Fatalf("warnings on reopening: %v", *warnings)
	}
	after := s2.Read(Hour)
	if !after.Since.Equal(start) || len(after.Times) != 2+30+1 {
		t.Fatalf("reopened: since %v (want %v), %d buckets (want 33)", after.Since, start, len(after.Times))
	}
	if !after.Times[2].Equal(before.Times[2]) || after.Status2xx[2] != 7 || after.Status5xx[2] != 1 ||
		after.MemoryBytes[2] != 30<<20 || after.Requests[32] != 0 {
		t.Fatalf("reopened: bucket 2 at %v (was %v): 2xx %d, 5xx %d, memory %v; requests %v",
			after.Times[2], before.Times[2], after.Status2xx[2], after.Status5xx[2], after.MemoryBytes[2], after.Requests)
	}
	if len(after.Events) != 2 || after.Events[0].DeployID != "a-20261129T120025000" || !after.Events[0].At.Equal(before.Events[0].At) ||
		after.Events[1].Detail != before.Events[1].Detail || len(after.Events[1].Detail) != maxDetail {
		t.Fatalf("reopened: events %+v, before %+v", after.Events, before.Events)
	}
	request(s2, c2, 404, time.Millisecond, false)
	if got := s2.Read(Hour); got.Status4xx[32] != 1 || got.Status2xx[2] != 7 {
		t.Fatalf("written after the restart: 4xx %v", got.Status4xx)
	}
}

// TestFileClockSetBackWhileDown: an agent that starts with the wall clock
// before the history's last entry goes on from that entry: nothing
// recorded is overwritten.
func TestFileClockSetBackWhileDown(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	s, c, _ := openTest(t, dir, start)
	c.advance(time.Hour - 5*time.Second)
	request(s, c, 200, time.Millisecond, false)
	s.Mark(Stop, "", "", 0)

	s2, c2, warnings := openTest(t, dir, start.Add(-2*time.Hour))
	if len(*warnings) != 0 {
		t.Fatalf("warnings: %v", *warnings)
	}
	request(s2, c2, 500, time.Millisecond, false)
	got := s2.Read(Hour)
	var ok, bad uint32
	for i := range got.Times {
		ok += got.Status2xx[i]
		bad += got.Status5xx[i]
	}
	if ok != 1 || bad != 1 || len(got.Events) != 1 {
		t.Fatalf("after a restart with the clock set back: %d 2xx, %d 5xx, events %+v; want 1, 1 and the stop", ok, bad, got.Events)
	}
}

// TestFileUnusableIsMovedAside: a file that is torn, of another program,
// version or byte order, or of a history that cannot be this agent's is
// moved aside with its bytes intact, with one warning, and the slot
// starts a new history in a new file.
func TestFileUnusableIsMovedAside(t *testing.T) {
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	good := func() []byte {
		dir := t.TempDir()
		s, _, _ := openTest(t, dir, start)
		s.Mark(Deploy, "x", "", 0)
		b, err := os.ReadFile(filepath.Join(dir, "a.hist"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	patch := func(off int, v any) []byte {
		b := bytes.Clone(good)
		var w bytes.Buffer
		_ = binary.Write(&w, binary.NativeEndian, v)
		copy(b[off:], w.Bytes())
		return b
	}
	var h header
	off := func(p unsafe.Pointer) int { return int(uintptr(p) - uintptr(unsafe.Pointer(&h))) }
	cases := map[string]struct {
		content []byte
		why     string
	}{
		"torn":          {good[:len(good)/2], "bytes"},
		"tiny":          {good[:10], "shorter than a header"},
		"foreign":       {[]byte(strings.Repeat("not a history\n", 20000)), "not a slotagent history file"},
		"version":       {patch(off(unsafe.Pointer(&h.version)), uint32(fileVersion+1)), "format version 2"},
		"byte order":    {patch(off(unsafe.Pointer(&h.order)), uint32(0x04030201)), "byte order"},
		"geometry":      {patch(off(unsafe.Pointer(&h.size)), uint64(12)), "its header says 12"},
		"longer":        {append(bytes.Clone(good), 0), "bytes"},
		"far in future": {patch(off(unsafe.Pointer(&h.since)), start.Add(maxAge+time.Hour).UnixNano()), "it starts at"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "a.hist")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			s, c, warnings := openTest(t, dir, start.Add(time.Minute))
			if len(*warnings) != 1 || !strings.Contains((*warnings)[0], tc.why) || !strings.Contains((*warnings)[0], "a.hist.ignored") {
				t.Fatalf("warnings %q, want one saying %q and where the file went", *warnings, tc.why)
			}
			if aside, err := os.ReadFile(path + ".ignored"); err != nil || !bytes.Equal(aside, tc.content) {
				t.Fatalf("the file moved aside: %v (same bytes: %v)", err, bytes.Equal(aside, tc.content))
			}
			request(s, c, 200, time.Millisecond, false)
			if got := s.Read(Hour); len(got.Events) != 0 || got.Requests[0] != 1 || !got.Since.Equal(start.Add(time.Minute)) {
				t.Fatalf("the new history: events %+v, requests %v, since %v", got.Events, got.Requests, got.Since)
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() != int64(unsafe.Sizeof(store{})) || fi.Mode().Perm() != 0o600 {
				t.Fatalf("the new file: %v %v", fi, err)
			}
		})
	}
}

// TestFileFolderUnusable: a folder that cannot be made leaves the
// history in memory, with a warning.
func TestFileFolderUnusable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, c, warnings := openTest(t, filepath.Join(file, "history"), time.Now())
	if len(*warnings) != 1 || !strings.Contains((*warnings)[0], "memory only") {
		t.Fatalf("warnings %q", *warnings)
	}
	request(s, c, 200, time.Millisecond, false)
	if got := s.Read(Hour); got.Requests[0] != 1 {
		t.Fatalf("requests %v", got.Requests)
	}
}
