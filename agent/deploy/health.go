package deploy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder-slots/coder-slots/agent/internal/ctxtime"
	"github.com/coder-slots/coder-slots/agent/slot"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// HealthConfig is the health gate a release passes before it gets traffic.
type HealthConfig struct {
	// ListenTimeout is how long the app may take to listen on PORT.
	ListenTimeout time.Duration
	// Attempts is how many times GET /health (then /) is tried.
	Attempts int
	// Interval is the wait between attempts.
	Interval time.Duration
	// Timeout bounds one request.
	Timeout time.Duration
}

// DefaultHealth: 60 s to listen, then 15 attempts 1 s apart, 5 s each.
func DefaultHealth() HealthConfig {
	return HealthConfig{ListenTimeout: 60 * time.Second, Attempts: 15, Interval: time.Second, Timeout: 5 * time.Second}
}

// gate waits until the candidate listens on its port, then until GET
// /health or GET / answers below 500. A new release fails as soon as its
// process exits; with lenient (a release coming back after a restart of the
// workspace) the supervisor's restarts are given their chance and only an
// errored or stopped process fails.
func gate(ctx context.Context, c *slot.Candidate, cfg HealthConfig, lenient bool, log io.Writer) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port()))
	deadline := time.Now().Add(cfg.ListenTimeout)
	for {
		if err := exited(c, lenient); err != nil {
			return err
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("app did not listen on PORT=%d within %s: it must read process.env.PORT", c.Port(), cfg.ListenTimeout)
		}
		if err := ctxtime.Sleep(ctx, 25*time.Millisecond); err != nil {
			return err
		}
	}
	client := &http.Client{Timeout: cfg.Timeout}
	var last string
	for i := 1; i <= cfg.Attempts; i++ {
		for _, path := range []string{"/health", "/"} {
			code, err := probe(ctx, client, "http://"+addr+path)
			if err == nil && code < 500 {
				fmt.Fprintf(log, "health check passed: GET %s answered %d\n", path, code)
				return nil
			}
			if err != nil {
				last = fmt.Sprintf("GET %s: %v", path, err)
			} else {
				last = fmt.Sprintf("GET %s answered %d", path, code)
			}
		}
		fmt.Fprintf(log, "health check %d/%d failed: %s\n", i, cfg.Attempts, last)
		if err := exited(c, lenient); err != nil {
			return err
		}
		if i < cfg.Attempts {
			if err := ctxtime.Sleep(ctx, cfg.Interval); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("health check failed %d times (last: %s)", cfg.Attempts, last)
}

// exited reports a candidate whose process has exited (even if it is being
// restarted, unless lenient): a new release must come up on its first try.
func exited(c *slot.Candidate, lenient bool) error {
	proc := c.Process()
	if proc == nil {
		return nil // a static site: the agent serves it, nothing can exit
	}
	info := proc.Info()
	down := info.Status == supervisor.Errored || info.Status == supervisor.Stopped
	if !lenient {
		down = info.Restarts > 0 || (info.Status != supervisor.Online && info.Status != supervisor.Launching)
	}
	if down {
		why := info.LastExit
		if why == "" {
			why = string(info.Status)
		}
		return fmt.Errorf("the start command exited (%s) before the app answered on PORT=%d", why, c.Port())
	}
	return nil
}

func probe(ctx context.Context, client *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// appTail is the slot's log lines written since the candidate started.
func appTail(d *Deployer, name string, since time.Time) string {
	s := d.slots(name)
	if s == nil {
		return ""
	}
	sink, err := s.Logs()
	if err != nil {
		return ""
	}
	lines, err := sink.Tail(200)
	if err != nil {
		return ""
	}
	var out []string
	for _, l := range lines {
		ts, _, _ := strings.Cut(l, " ")
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil && !t.Before(since.Add(-time.Millisecond)) {
			out = append(out, l)
		}
	}
	if len(out) > 15 {
		out = out[len(out)-15:]
	}
	return strings.Join(out, "\n")
}
