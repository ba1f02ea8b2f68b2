package admin

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/deploy"
)

func TestHostsAllowList(t *testing.T) {
	h := NewHosts("https://admin--dev--alice.coder.example.com/", []string{"panel.example", "*.proxy.example", "tunnel.example:8443"})
	for host, want := range map[string]bool{
		// What coder port-forward, Coder's healthchecks and local tools send.
		"127.0.0.1:9000": true, "localhost:9000": true, "[::1]:9000": true, "localhost": true, "LOCALHOST:8000": true,
		"10.1.2.3:9000": true, "[fe80::1]:9000": true,
		// ADMIN_URL's host, as Coder's proxy passes it on, in both app URL forms.
		"admin--dev--alice.coder.example.com":          true,
		"admin--dev--alice.coder.example.com:443":      true,
		"Admin--Dev--Alice.coder.example.com.":         true,
		"admin--main--dev--alice.coder.example.com":    true,
		"admin--main--dev--alice.coder.example.com:80": true,
		// admin_allowed_hosts.
		"panel.example": true, "panel.example:9000": true, "a.proxy.example": true, "b.a.proxy.example:1": true,
		"tunnel.example:8443": true,
		// Everything else, a rebinding page's name first.
		"rebind.evil.test:9000": false, "rebind.evil.test": false, "": false, "localhost.evil.test:9000": false,
		"admin--dev--alice.coder.example.com.evil.test": false, "slot-a--dev--alice.coder.example.com": false,
		"admin--dev--bob.coder.example.com": false, "admin--dev--alice.other.example": false,
		"proxy.example": false, "evilproxy.example": false, "tunnel.example": false, "tunnel.example:9000": false,
		"evilpanel.example": false,
	} {
		if got := h.Allows(host); got != want {
			t.Errorf("Allows(%q) = %v, want %v", host, got, want)
		}
	}
	if none := NewHosts("", nil); none.Allows("admin--dev--alice.coder.example.com") || !none.Allows("127.0.0.1:9000") {
		t.Error("without ADMIN_URL: only addresses and localhost")
	}
	if long := NewHosts("http://admin--main--dev--alice.coder.example.com:3000/", nil); !long.Allows("admin--dev--alice.coder.example.com:3000") {
		t.Error("ADMIN_URL in the agent-name form: the short form is refused")
	}
}

// countingDeploys counts env changes.
type countingDeploys struct {
	fakeDeploys
	envChanges atomic.Int32
}

func (c *countingDeploys) SetEnv(string, map[string]string, []string, string) (map[string]string, *deploy.Record, error) {
	c.envChanges.Add(1)
	return nil, nil, nil
}

// TestBrowserRefusesADNSRebindingPage: a page whose name now points to
// 127.0.0.1 is same-origin for the browser; its JSON POST is refused for
// its Host, and changes nothing; the same request from the panel's own
// names goes through.
func TestBrowserRefusesADNSRebindingPage(t *testing.T) {
	d := &countingDeploys{}
	a := New(&fakeAgent{appStart: time.Now()}, d, NewMetrics(), slog.New(slog.DiscardHandler))
	browser, err := a.Browser(NewHosts("https://admin--dev--alice.coder.example.com/", nil))
	if err != nil {
		t.Fatal(err)
	}
	post := func(host string) *http.Request {
		r := httptest.NewRequest("POST", "/api/slots/e/env", strings.NewReader(`{"set":{"V":"1"}}`))
		r.Host = host
		r.Header.Set("Origin", "http://"+host)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	var e Error
	if rec := call(t, browser, post("rebind.evil.test:9000"), &e); rec.Code != http.StatusMisdirectedRequest ||
		!strings.Contains(e.Error, "rebind.evil.test:9000") || !strings.Contains(e.Details, "admin_allowed_hosts (SLOTAGENT_ADMIN_ALLOWED_HOSTS)") {
		t.Fatalf("rebinding page: %d %+v", rec.Code, e)
	}
	get := httptest.NewRequest("GET", "/healthz", nil)
	get.Host = "rebind.evil.test:9000"
	if rec := call(t, browser, get, &e); rec.Code != http.StatusMisdirectedRequest {
		t.Fatalf("GET from a rebinding page: %d", rec.Code)
	}
	if n := d.envChanges.Load(); n != 0 {
		t.Fatalf("a refused request changed the env (%d)", n)
	}
	for _, host := range []string{"127.0.0.1:9000", "admin--dev--alice.coder.example.com", "admin--main--dev--alice.coder.example.com"} {
		if rec := call(t, browser, post(host), nil); rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", host, rec.Code, rec.Body)
		}
	}
	if n := d.envChanges.Load(); n != 3 {
		t.Fatalf("env changes from the panel's own names: %d, want 3", n)
	}
}

// TestServerClosesIdleConnections: a kept-alive connection to the admin
// port is closed once idle for the idle timeout.
func TestServerClosesIdleConnections(t *testing.T) {
	a, _ := newTestAPI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(a.Control(), 200*time.Millisecond)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("%v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	start := time.Now()
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) || time.Since(start) > 5*time.Second {
		t.Fatalf("idle connection: %v after %s, want closed", err, time.Since(start))
	}
}

// TestHostCheckOnTheWire: what a hostile client sends on a raw socket to
// the real admin server. Every request of a kept-alive connection is
// checked on its own (an allowed first request does not open the door for
// the next), a request without Host (HTTP/1.0) is refused, and two Host
// fields are net/http's 400.
func TestHostCheckOnTheWire(t *testing.T) {
	d := &countingDeploys{}
	a := New(&fakeAgent{appStart: time.Now()}, d, NewMetrics(), slog.New(slog.DiscardHandler))
	browser, err := a.Browser(NewHosts("https://admin--dev--alice.coder.example.com/", nil))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(browser, time.Minute)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	// send writes raw on a new connection and returns the status of each
	// answer read until the server closes it.
	send := func(raw string) []int {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		var codes []int
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return codes
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes = append(codes, resp.StatusCode)
			if resp.Close {
				return codes
			}
		}
	}
	body := `{"set":{"V":"1"}}`
	envPost := func(host, conn string) string {
		return "POST /api/slots/e/env HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" + conn + "\r\n" + body
	}
	if got := send(envPost("127.0.0.1:9000", "") + envPost("rebind.evil.test:9000", "Connection: close\r\n")); !slices.Equal(got, []int{200, 421}) {
		t.Fatalf("allowed then rebinding Host on one connection: %v, want [200 421]", got)
	}
	if got := send("GET /healthz HTTP/1.0\r\n\r\n"); !slices.Equal(got, []int{421}) {
		t.Fatalf("HTTP/1.0 without Host: %v, want [421]", got)
	}
	if got := send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: rebind.evil.test\r\n\r\n"); !slices.Equal(got, []int{400}) {
		t.Fatalf("two Host fields: %v, want [400]", got)
	}
	if n := d.envChanges.Load(); n != 1 {
		t.Fatalf("env changes: %d, want 1 (only the allowed request)", n)
	}
}

// TestHostsEntriesAreNormalised: an admin_allowed_hosts entry with a port
// matches a Host in any case and with a final dot, like one without;
// "*.domain:port" matches the subdomains on that port; a wildcard never
// matches an empty label.
func TestHostsEntriesAreNormalised(t *testing.T) {
	h := NewHosts("", []string{"tunnel.example:8443", "*.proxy.example:8443", "*.wild.example", "Panel.Example."})
	for host, want := range map[string]bool{
		"tunnel.example:8443": true, "Tunnel.Example.:8443": true, "TUNNEL.EXAMPLE:8443": true, "tunnel.example.:9000": false,
		"a.proxy.example:8443": true, "B.a.Proxy.Example.:8443": true, "a.proxy.example:9000": false, "a.proxy.example": false,
		"proxy.example:8443": false, ".proxy.example:8443": false,
		"a.wild.example": true, ".wild.example": false, ".wild.example:80": false, "a..wild.example": false, "wild.example": false,
		"panel.example": true, "PANEL.example.:9000": true,
	} {
		if got := h.Allows(host); got != want {
			t.Errorf("Allows(%q) = %v, want %v", host, got, want)
		}
	}
}
