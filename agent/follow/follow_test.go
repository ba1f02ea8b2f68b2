package follow

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/reaper"
)

func TestMain(m *testing.M) {
	if err := reaper.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestBackoffDoublesUpToItsCap(t *testing.T) {
	for _, c := range []struct {
		interval time.Duration
		n        int
		want     time.Duration
	}{
		{time.Second, 1, time.Second},
		{time.Second, 2, 2 * time.Second},
		{time.Second, 4, 8 * time.Second},
		{time.Second, 60, maxBackoff},
		{30 * time.Second, 3, 2 * time.Minute},
		{30 * time.Second, 200, maxBackoff},
		{time.Hour, 5, time.Hour}, // an interval over the cap is the cap
	} {
		if got := backoff(c.interval, c.n); got != c.want {
			t.Errorf("backoff(%s, %d) = %s, want %s", c.interval, c.n, got, c.want)
		}
	}
	for range 1000 {
		if j := jitter(30 * time.Second); j < 27*time.Second || j > 33*time.Second {
			t.Fatalf("jitter(30s) = %s, outside ±10%%", j)
		}
	}
}

// TestOneCheckInFlightPerRepository: slots that follow the same
// repository while its check runs share that check (one git ls-remote to
// a real, slow smart-HTTP server) and its answer.
func TestOneCheckInFlightPerRepository(t *testing.T) {
	root := t.TempDir()
	work := t.TempDir()
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", work},
		{"-C", work, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "one"},
		{"init", "-q", "--bare", filepath.Join(root, "app.git")},
		{"-C", work, "push", "-q", filepath.Join(root, "app.git"), "main"},
	} {
		if out, err := reaper.Output(context.Background(), exec.Command("git", args...)); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	repo := testkit.GitHTTPServer(t, root, testkit.WithDelay(500*time.Millisecond)) + "/app.git"
	f := New(Config{}, nil, nil, nil)
	defer f.Close()

	results := make(chan string, 5)
	var wg sync.WaitGroup
	check := func() {
		defer wg.Done()
		heads, _, err := f.heads(repo)
		if err != nil {
			t.Error(err)
		}
		results <- heads["main"]
	}
	wg.Add(1)
	go check()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		f.mu.Lock()
		inFlight := f.flights[repo] != nil
		f.mu.Unlock()
		if inFlight {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first check never started")
		}
	}
	for range 4 {
		wg.Add(1)
		go check()
	}
	wg.Wait()
	close(results)
	var tips []string
	for r := range results {
		tips = append(tips, r)
	}
	if n := f.Requests(); n != 1 {
		t.Fatalf("%d checks of one repository for 5 slots checking at once, want 1", n)
	}
	if len(tips) != 5 || tips[0] == "" {
		t.Fatalf("tips %v", tips)
	}
	for _, tip := range tips {
		if tip != tips[0] {
			t.Fatalf("the slots got different answers: %v", tips)
		}
	}
	if _, _, err := f.heads(repo); err != nil || f.Requests() != 2 {
		t.Fatalf("a later check: %v, %d requests (want a new one)", err, f.Requests())
	}
}
