package slot

import (
	"bufio"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/relay"
)

// observation is one call of Config.Observe.
type observation struct {
	slot  string
	code  int
	d     time.Duration
	local bool
}

// TestObservedProxyKeepsStreamsAndUpgrades: with Config.Observe set, a
// streamed response still arrives chunk by chunk and a WebSocket upgrade
// still switches protocols, and each request is reported with its status
// and the time to its header.
func TestObservedProxyKeepsStreamsAndUpgrades(t *testing.T) {
	s, base := newSlot(t)
	seen := make(chan observation, 100)
	s.cfg.Observe = func(slot string, r relay.Response) { seen <- observation{slot, r.Code, r.Took, r.Local} }
	runHello(t, s, nil)
	testkit.WaitHTTP(t, base+"/health", 200, 10*time.Second)
	next := func() observation {
		t.Helper()
		select {
		case o := <-seen:
			return o
		case <-time.After(5 * time.Second):
			t.Fatal("no observation")
			return observation{}
		}
	}
	// The waits: 503s from the unavailable page until the app listens, then a 200.
	for o := next(); o.code != 200; o = next() {
		if o.slot != "a" || o.code != http.StatusServiceUnavailable || !o.local {
			t.Fatalf("wait for the app observed as %+v", o)
		}
	}

	if resp, body := get(t, base+"/missing-is-fine"); resp.StatusCode != 200 || body != "hello from a v1" {
		t.Fatalf("proxied: %d %q", resp.StatusCode, body)
	}
	if o := next(); o.code != 200 || o.d <= 0 || o.local {
		t.Fatalf("plain request observed as %+v", o)
	}

	start := time.Now()
	resp, err := http.Get(base + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(resp.Body)
	if first, err := r.ReadString('\n'); err != nil || first != "first\n" || time.Since(start) > 250*time.Millisecond {
		t.Fatalf("first chunk %q %v after %s: the observed proxy buffered the stream", first, err, time.Since(start))
	}
	rest, _ := io.ReadAll(r)
	resp.Body.Close()
	if string(rest) != "second\n" {
		t.Fatalf("second chunk %q", rest)
	}
	if o := next(); o.code != 200 || o.d > 250*time.Millisecond {
		t.Fatalf("stream observed as %+v: the time is to the header, not to the end", o)
	}

	req, err := http.NewRequest(http.MethodGet, base+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", resp.Status)
	}
	conn := resp.Body.(io.ReadWriteCloser)
	if _, err := io.WriteString(conn, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
	if o := next(); o.code != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade observed as %+v", o)
	}
	conn.Close()

	s.Stop(0)
	get(t, base+"/")
	select {
	case o := <-seen:
		t.Fatalf("the placeholder was observed: %+v", o)
	case <-time.After(100 * time.Millisecond):
	}
}
