package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/coder-slots/coder-slots/agent/internal/ctxtime"
	"github.com/coder-slots/coder-slots/agent/procgroup"
)

// pollInterval is the pause between two attempts of a timed poll.
const pollInterval = time.Millisecond

// newClient is a keep-alive HTTP client for loopback requests (never
// through a proxy).
func newClient() *http.Client {
	return &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true, IdleConnTimeout: time.Minute},
	}
}

// get fetches url and returns its status and body.
func get(client *http.Client, url string) (int, []byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("read %s: %w", url, err)
	}
	return resp.StatusCode, body, nil
}

// answers is what a poll waits for.
type answers func(status int, body []byte) bool

// ok200 accepts any 200.
func ok200(status int, _ []byte) bool { return status == http.StatusOK }

// bodyIs accepts a 200 whose body is want (the app, not the placeholder).
func bodyIs(want string) answers {
	return func(status int, body []byte) bool { return status == http.StatusOK && string(body) == want }
}

// pollUntil requests url every pollInterval until accept says yes and
// returns how long after since that answer arrived. Each attempt first
// calls each, when not nil. It gives up after timeout, naming the last answer.
func pollUntil(ctx context.Context, client *http.Client, url string, accept answers, since time.Time, timeout time.Duration, each func()) (time.Duration, error) {
	deadline := since.Add(timeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		if each != nil {
			each()
		}
		status, body, err := get(client, url)
		at := time.Now()
		if err == nil && accept(status, body) {
			return at.Sub(since), nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d %.80q", status, body)
		}
		if err := ctxtime.Sleep(ctx, pollInterval); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("%s did not answer as expected within %s (last: %s)", url, timeout, last)
}

// treeRSS is the VmRSS of pid and all its descendants, in bytes.
func treeRSS(pid int) (uint64, error) {
	total, err := vmRSS(pid)
	if err != nil {
		return 0, err
	}
	for _, d := range procgroup.Descendants(pid) {
		if rss, err := vmRSS(d); err == nil { // a descendant may just have exited
			total += rss
		}
	}
	return total, nil
}

// vmRSS reads VmRSS from /proc/<pid>/status, in bytes.
func vmRSS(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read RSS of %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS of %d: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("read RSS of %d: no VmRSS line (a zombie?)", pid)
}

// children lists the direct children of pid, from the children files of
// all its threads (any thread of a Go program may fork).
func children(pid int) map[int]bool {
	out := map[int]bool{}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out[c] = true
			}
		}
	}
	return out
}
