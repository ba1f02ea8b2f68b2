package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
)

// scrape reads /metrics through client at url.
func scrape(t *testing.T, client *http.Client, url string) map[string]float64 {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return testkit.ParseMetrics(t, resp.Body)
}

// TestMetricsAfterTrafficAndDeploys: after a deploy, requests through the
// slot and a failed deploy, /metrics on the admin port and on the control
// socket shows them, with the slot's app up and measured.
func TestMetricsAfterTrafficAndDeploys(t *testing.T) {
	a := newAgent(t)
	bare, _ := sampleRepo(t, t.TempDir())
	a.start(fastDeploys...)

	a.mustCLI("deploy", "a", "--repo", bare, "--wait")
	for range 5 {
		if code, b := body(t, a.url("a", "/")); code != 200 || b != "hello v1 1m" {
			t.Fatalf("slot a: %d %q", code, b)
		}
	}
	body(t, a.url("b", "/")) // a placeholder: not proxied, not counted
	if out, errOut, code := a.cli("deploy", "b", "--repo", bare, "--ref", "no-such-branch", "--wait"); code == 0 {
		t.Fatalf("deploy of a missing branch succeeded:\n%s%s", out, errOut)
	}

	socket := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", config.SocketPath(a.dataDir))
	}}}
	// The supervisor samples CPU and memory every 2 s.
	var m map[string]float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if m = scrape(t, http.DefaultClient, a.url("admin", "/metrics")); m[`slotagent_process_resident_memory_bytes{process="slot-a",slot="a"}`] > 0 {
			break
		}
	}
	for series, ok := range map[string]func(float64) bool{
		`slotagent_slot_requests_total{class="2xx",code="200",slot="a"}`:               func(v float64) bool { return v == 5 },
		`slotagent_slot_request_duration_seconds_count{slot="a"}`:                      func(v float64) bool { return v == 5 },
		`slotagent_slot_request_duration_seconds_sum{slot="a"}`:                        func(v float64) bool { return v > 0 && v < 5 },
		`slotagent_deploys_total{result="succeeded",slot="a",trigger="deploy"}`:        func(v float64) bool { return v == 1 },
		`slotagent_deploys_total{result="failed",slot="b",trigger="deploy"}`:           func(v float64) bool { return v == 1 },
		`slotagent_deploy_duration_seconds_count{result="succeeded",trigger="deploy"}`: func(v float64) bool { return v == 1 },
		`slotagent_deploy_duration_seconds_sum{result="succeeded",trigger="deploy"}`:   func(v float64) bool { return v > 0.1 && v < 600 },
		`slotagent_process_up{process="slot-a",slot="a"}`:                              func(v float64) bool { return v == 1 },
		`slotagent_process_up{process="slot-b",slot="b"}`:                              func(v float64) bool { return v == 1 },
		`slotagent_process_up{process="admin",slot=""}`:                                func(v float64) bool { return v == 1 },
		`slotagent_process_restarts_total{process="slot-a",slot="a"}`:                  func(v float64) bool { return v == 0 },
		`slotagent_process_cpu_percent{process="slot-a",slot="a"}`:                     func(v float64) bool { return v >= 0 && v < 400 },
		`slotagent_process_resident_memory_bytes{process="slot-a",slot="a"}`:           func(v float64) bool { return v > 1<<20 && v < 1<<30 },
		`slotagent_slot_info{release="",slot="b",type="placeholder"}`:                  func(v float64) bool { return v == 1 },
		`slotagent_reaped_orphans_total`:                                               func(v float64) bool { return v >= 0 },
		`process_resident_memory_bytes`:                                                func(v float64) bool { return v > 0 },
	} {
		if v, present := m[series]; !present || !ok(v) {
			t.Errorf("%s = %v (present %v)", series, v, present)
		}
	}
	if _, ok := m[`slotagent_slot_requests_total{class="2xx",code="200",slot="b"}`]; ok {
		t.Error("a request to a placeholder was counted as proxied")
	}
	app := false
	for series := range m {
		app = app || strings.HasPrefix(series, `slotagent_slot_info{release="`) && strings.HasSuffix(series, `",slot="a",type="app"}`)
	}
	if !app {
		t.Error("no slotagent_slot_info for slot a's app")
	}

	viaSocket := scrape(t, socket, "http://slotagent/metrics")
	if v := viaSocket[`slotagent_deploys_total{result="succeeded",slot="a",trigger="deploy"}`]; v != 1 {
		t.Errorf("control socket: deploys succeeded = %v", v)
	}
}

// TestConnectionLimitsOfTheAgent: the agent gives its slots
// max_conns_per_slot (a connection over it is closed and counted in
// /metrics) and idle_timeout to its slots and its admin port.
func TestConnectionLimitsOfTheAgent(t *testing.T) {
	a := newAgent(t)
	a.start("SLOTAGENT_MAX_CONNS_PER_SLOT=2", "SLOTAGENT_IDLE_TIMEOUT=500ms")
	addr := strings.TrimSuffix(strings.TrimPrefix(a.url("a", "/"), "http://"), "/")
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	series := `slotagent_slot_connections_refused_total{slot="a"}`
	// Until both held connections are tracked, one more may be served.
	for deadline := time.Now().Add(10 * time.Second); scrape(t, http.DefaultClient, a.url("admin", "/metrics"))[series] < 1; {
		if time.Now().After(deadline) {
			t.Fatalf("no connection over max_conns_per_slot counted in %s", series)
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			_, _ = c.Read(make([]byte, 1)) // closed at once over the cap
			c.Close()
		}
	}
	for _, slot := range []string{"b", "admin"} {
		c, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(a.url(slot, "/"), "http://"), "/"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", slot, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		start := time.Now()
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) || time.Since(start) > 5*time.Second {
			t.Fatalf("%s: an idle kept-alive connection: %v after %s, want closed after idle_timeout", slot, err, time.Since(start))
		}
	}
}
