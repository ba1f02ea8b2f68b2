package relay

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRelayClosesAfterABadBody: a malformed chunked body ends the
// connection, so what follows it is never read as a request, whether the
// request was answered locally or relayed.
func TestRelayClosesAfterABadBody(t *testing.T) {
	paths := make(chan string, 10)
	u := newUpstream(t, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		paths <- r.Method + " " + r.URL.Path
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	var r router
	_, addr := startRelay(t, &r)
	const smuggle = "zz\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, route := range []*Upstream{nil, u.up} {
		r.cur.Store(route)
		c := dial(t, addr)
		c.send("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n" + smuggle)
		resp, body := c.response(http.MethodPost)
		if !resp.Close {
			t.Fatalf("routed to %v: answered %d %q and kept the connection", route, resp.StatusCode, body)
		}
		if route != nil && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("relayed bad body answered %d, want 400", resp.StatusCode)
		}
		if !c.closed() {
			t.Fatal("connection left open after a bad body")
		}
	}
	close(paths)
	for p := range paths {
		if p != "POST /a" {
			t.Fatalf("the upstream saw %s", p)
		}
	}
}

// zeros is an endless body.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestRelayEarlyAnswerAndFullDuplex: an app may answer before it has read
// the body (the answer reaches the client), or echo the body as it reads
// it (no deadlock).
func TestRelayEarlyAnswerAndFullDuplex(t *testing.T) {
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/limited" {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			io.WriteString(w, "too big")
			return
		}
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		_, _ = io.Copy(w, r.Body)
	}))
	var r router
	r.cur.Store(u.up)
	_, addr := startRelay(t, &r)
	const size = 32 << 20
	post := func(path string) (*http.Response, int64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, io.LimitReader(zeros{}, size))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = size
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		n, _ := io.Copy(io.Discard, resp.Body)
		return resp, n
	}
	if resp, _ := post("/limited"); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("early answer: the client got %d", resp.StatusCode)
	}
	if resp, n := post("/echo"); resp.StatusCode != 200 || n != size {
		t.Fatalf("full-duplex echo: %d, %d of %d bytes", resp.StatusCode, n, size)
	}
}

// TestRelayNoticesAClientGone: when the client leaves during an idle
// stream, the app's request ends and the upstream is no longer counted.
func TestRelayNoticesAClientGone(t *testing.T) {
	var cancelled atomic.Bool
	release := make(chan struct{})
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": hello\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			cancelled.Store(true)
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release) })
	var r router
	r.cur.Store(u.up)
	_, addr := startRelay(t, &r)
	c := dial(t, addr)
	c.send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(c.r, nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, func() bool { return cancelled.Load() && u.up.Active() == 0 }, "the app's request to end after the client left")
}

// TestRelaySendsAStreamsHeaderAtOnce: a stream's header reaches the client
// before its first event.
func TestRelaySendsAStreamsHeaderAtOnce(t *testing.T) {
	releaseCh := make(chan struct{})
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-releaseCh
		io.WriteString(w, "data: x\n\n")
	}))
	release := sync.OnceFunc(func() { close(releaseCh) })
	t.Cleanup(release) // before the upstream's Close, which waits for its handlers
	var r router
	r.cur.Store(u.up)
	_, addr := startRelay(t, &r)
	c := dial(t, addr)
	c.send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(c.r, nil)
	release()
	if err != nil {
		t.Fatalf("the header of a stream was held back: %v", err)
	}
	if b, _ := bufio.NewReader(resp.Body).ReadString('\n'); b != "data: x\n" {
		t.Fatalf("event %q", b)
	}
}

// TestRelayDropsAnUpstreamOutOfStep: bytes an app sends past its response
// (here a body on a HEAD answer that looks like a response) are never
// taken for the answer to the next request, nor is a 101 nobody asked for.
func TestRelayDropsAnUpstreamOutOfStep(t *testing.T) {
	app := rawApp(t, func(path string) string {
		switch path {
		case "/head":
			forged := "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
			return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(forged)) + "\r\n\r\n" + forged
		case "/hints":
			return strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", maxInformational+1) +
				"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate"
		case "/one-hint":
			return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"
		case "/huge":
			return "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("x", maxResponseHeaderBytes+8192) + "\r\n\r\n"
		case "/switch":
			return "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"
	})
	var r router
	r.cur.Store(app)
	_, addr := startRelay(t, &r)
	c := dial(t, addr)
	c.send("HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n")
	c.response(http.MethodHead)
	c.send("GET /private HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(http.MethodGet); body != "real" {
		t.Fatalf("the next request got %q", body)
	}
	c.send("GET /switch HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.response(http.MethodGet); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("an unasked 101 was passed on: %d %q", resp.StatusCode, body)
	}
	for _, path := range []string{"/hints", "/huge"} {
		c.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		// The informational answers within the limit reach the client first.
		resp, body := c.response(http.MethodGet)
		for resp.StatusCode == http.StatusEarlyHints {
			resp, body = c.response(http.MethodGet)
		}
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s: %d %q, want the Unavailable answer", path, resp.StatusCode, body)
		}
	}

	// An HTTP/1.0 client gets no informational answer, only the final one.
	old := dial(t, addr)
	old.send("GET /one-hint HTTP/1.0\r\n\r\n")
	if resp, body := old.response(http.MethodGet); resp.StatusCode != 200 || body != "real" {
		t.Fatalf("HTTP/1.0 client: %d %q", resp.StatusCode, body)
	}
}

// TestRelayRecoversFromAPanic: a handler's panic ends its connection and is
// logged; the server goes on serving.
func TestRelayRecoversFromAPanic(t *testing.T) {
	var logged bytes.Buffer
	var mu sync.Mutex
	var r router
	_, addr := startRelay(t, &r, func(s *Server) {
		s.Local = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path == "/panic" {
				panic("handler bug")
			}
			io.WriteString(w, "fine")
		})
		s.Log = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, nil))
	})
	c := dial(t, addr)
	c.send("GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
	if !c.closed() {
		t.Fatal("the connection of a panicking handler stayed open")
	}
	mu.Lock()
	log := logged.String()
	mu.Unlock()
	if !strings.Contains(log, "handler bug") {
		t.Fatalf("the panic was not logged: %q", log)
	}
	c = dial(t, addr)
	c.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(http.MethodGet); body != "fine" {
		t.Fatalf("after a panic: %q", body)
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
