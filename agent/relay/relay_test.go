package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// upstream is a real HTTP server the relay forwards to, counting the
// connections it accepted and those it closed.
type upstream struct {
	*httptest.Server
	conns  atomic.Int64
	closed atomic.Int64
	up     *Upstream
}

func newUpstream(t *testing.T, h http.Handler, configure ...func(*http.Server)) *upstream {
	t.Helper()
	u := &upstream{Server: httptest.NewUnstartedServer(h)}
	u.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			u.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			u.closed.Add(1)
		}
	}
	for _, f := range configure {
		f(u.Config)
	}
	u.Start()
	t.Cleanup(u.Close)
	u.up = NewUpstream(u.Listener.Addr().String())
	return u
}

// router is a route that tests can switch.
type router struct{ cur atomic.Pointer[Upstream] }

func (r *router) route() *Upstream { return r.cur.Load() }

// startRelay serves a relay on a free port, shut down at the test's end;
// Local answers "local <path>" and Unavailable 503 "down".
func startRelay(t *testing.T, r *router, configure ...func(*Server)) (*Server, string) {
	t.Helper()
	s := &Server{
		Route: r.route,
		Local: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "local %s", req.URL.Path)
		}),
		Unavailable: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "down")
		}),
	}
	for _, f := range configure {
		f(s)
	}
	addr, served := serve(t, s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	})
	return s, addr
}

// serve runs s on a free port; the channel gets what Serve returns.
func serve(t *testing.T, s *Server) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	return ln.Addr().String(), served
}

// rawConn is a client connection driven by hand.
type rawConn struct {
	t *testing.T
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, Conn: c, r: bufio.NewReader(c)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		c.t.Fatal(err)
	}
}

// response reads one response to a request of method and its whole body.
func (c *rawConn) response(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.r, &http.Request{Method: method})
	if err != nil {
		c.t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp, string(b)
}

// closed reports whether the server closed the connection.
func (c *rawConn) closed() bool {
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.r.ReadByte()
	return errors.Is(err, io.EOF)
}

func TestRelayForwardsHeadersAndKeepsOneUpstreamConnection(t *testing.T) {
	seen := make(chan http.Header, 10)
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("Host", r.Host)
		h.Set("Uri", r.RequestURI)
		seen <- h
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "dropped")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-App", "kept")
		io.WriteString(w, "hello")
	}))
	var r router
	r.cur.Store(u.up)
	_, addr := startRelay(t, &r)
	c := dial(t, addr)
	for i := range 3 {
		c.send("GET /a/b%2Fc?q=1 HTTP/1.1\r\nHost: slot-a--dev.example.com\r\nX-Forwarded-For: 10.0.0.9\r\n" +
			"X-Forwarded-Proto: https\r\nConnection: keep-alive, X-Secret\r\nX-Secret: hop\r\nProxy-Authorization: Basic eA==\r\n" +
			"Keep-Alive: timeout=9\r\nX-Custom: yes\r\n\r\n")
		resp, body := c.response(http.MethodGet)
		if resp.StatusCode != 200 || body != "hello" || resp.Close {
			t.Fatalf("request %d: %d %q close=%v", i, resp.StatusCode, body, resp.Close)
		}
		if resp.Header.Get("X-App") != "kept" || resp.Header.Get("X-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
			t.Fatalf("response header %v", resp.Header)
		}
		h := <-seen
		want := map[string]string{
			"Host": "slot-a--dev.example.com", "Uri": "/a/b%2Fc?q=1", "X-Custom": "yes",
			"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "slot-a--dev.example.com", "X-Forwarded-Proto": "http",
			"X-Secret": "", "Proxy-Authorization": "", "Keep-Alive": "", "User-Agent": "",
		}
		for k, v := range want {
			if got := h.Get(k); got != v {
				t.Errorf("upstream saw %s = %q, want %q", k, got, v)
			}
		}
	}
	if n := u.conns.Load(); n != 1 {
		t.Fatalf("3 requests on one client connection took %d upstream connections", n)
	}
}

func TestRelayBodiesAndFraming(t *testing.T) {
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("X-Trailer-Seen", r.Trailer.Get("X-Sum"))
			w.Header().Set("X-Length", fmt.Sprint(r.ContentLength))
			w.Write(body)
		case "/chunked":
			w.Header().Set("Trailer", "X-Done")
			io.WriteString(w, "one ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "two")
			w.Header().Set("X-Done", "yes")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/cached":
			w.WriteHeader(http.StatusNotModified)
		case "/sized":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "sized")
		case "/unframed":
			// An HTTP/1.0-style answer that ends when the connection closes.
			conn, brw, _ := http.NewResponseController(w).Hijack()
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
			brw.Flush()
			conn.Close()
		}
	}))
	var r router
	r.cur.Store(u.up)
	_, addr := startRelay(t, &r)
	c := dial(t, addr)

	c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde")
	resp, body := c.response(http.MethodPost)
	if body != "abcde" || resp.Header.Get("X-Length") != "5" {
		t.Fatalf("sized request body: %q, length %s", body, resp.Header.Get("X-Length"))
	}

	c.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 42\r\n\r\n")
	resp, body = c.response(http.MethodPost)
	if body != "abcde" || resp.Header.Get("X-Trailer-Seen") != "42" || resp.Header.Get("X-Length") != "-1" {
		t.Fatalf("chunked request: %q, trailer %q, length %s", body, resp.Header.Get("X-Trailer-Seen"), resp.Header.Get("X-Length"))
	}

	c.send("GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body = c.response(http.MethodGet)
	if body != "one two" || resp.TransferEncoding == nil || resp.Trailer.Get("X-Done") != "yes" {
		t.Fatalf("chunked response: %q %v trailer %v", body, resp.TransferEncoding, resp.Trailer)
	}

	c.send("HEAD /sized HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body = c.response(http.MethodHead)
	if body != "" || resp.Header.Get("Content-Length") != "5" {
		t.Fatalf("HEAD: %q, Content-Length %q", body, resp.Header.Get("Content-Length"))
	}
	for _, path := range []string{"/empty", "/cached"} {
		c.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := c.response(http.MethodGet); body != "" || resp.StatusCode < 204 {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
		}
	}

	before := u.conns.Load()
	c.send("GET /unframed HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body = c.response(http.MethodGet)
	if body != "until close" || resp.Close || len(resp.TransferEncoding) == 0 {
		t.Fatalf("unframed response: %q close=%v te=%v: want it chunked on a kept connection", body, resp.Close, resp.TransferEncoding)
	}
	c.send("GET /sized HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(http.MethodGet); body != "sized" {
		t.Fatalf("after an unframed response: %q", body)
	}
	if u.conns.Load() != before+1 {
		t.Fatalf("the upstream connection closed by the unframed answer was not replaced once (%d → %d)", before, u.conns.Load())
	}

	old := dial(t, addr)
	old.send("GET /unframed HTTP/1.0\r\n\r\n")
	if resp, body := old.response(http.MethodGet); body != "until close" || !resp.Close {
		t.Fatalf("HTTP/1.0 client: %q close=%v", body, resp.Close)
	}
	if !old.closed() {
		t.Fatal("the connection of an HTTP/1.0 client stayed open")
	}
}

func TestRelayStreamsAndContinues(t *testing.T) {
	releaseCh := make(chan struct{})
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/upload" {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "got %d", len(b))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-releaseCh
		io.WriteString(w, "data: second\n\n")
	}))
	release := sync.OnceFunc(func() { close(releaseCh) })
	t.Cleanup(release) // before the upstream's Close, which waits for its handlers
	var r router
	r.cur.Store(u.up)
	_, addr := startRelay(t, &r)

	resp, err := http.Get("http://" + addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: first\n" {
		t.Fatalf("first event %q %v: held back by the relay", line, err)
	}
	release()
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: second\n\n" {
		t.Fatalf("rest of the stream %q", rest)
	}

	c := dial(t, addr)
	c.send("PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	cont, err := http.ReadResponse(c.r, nil)
	if err != nil || cont.StatusCode != http.StatusContinue {
		t.Fatalf("no 100 Continue before the body: %v %v", cont, err)
	}
	c.send("data")
	if _, body := c.response(http.MethodPut); body != "got 4" {
		t.Fatalf("upload answered %q", body)
	}
}

// TestRelayRoutesEachRequest: after a route change the next request of a
// kept-alive connection goes to the new upstream, while a request in
// flight finishes on the old one, counted in Active until then.
func TestRelayRoutesEachRequest(t *testing.T) {
	slow, arrived := make(chan struct{}), make(chan struct{})
	a := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-slow
		}
		io.WriteString(w, "a")
	}))
	release := sync.OnceFunc(func() { close(slow) })
	t.Cleanup(release) // before the upstream's Close, which waits for its handlers
	b := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "b") }))
	var r router
	seen := make(chan int, 10)
	_, addr := startRelay(t, &r, func(s *Server) {
		s.Observe = func(o Response) {
			if o.Local || o.Took <= 0 || time.Since(o.Start) < o.Took {
				t.Errorf("an answer of the upstream observed as %+v", o)
			}
			seen <- o.Code
		}
	})

	c := dial(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(http.MethodGet); body != "local /" {
		t.Fatalf("no route: %q", body)
	}
	r.cur.Store(a.up)
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(http.MethodGet); body != "a" {
		t.Fatalf("routed to a: %q", body)
	}
	if code := <-seen; code != 200 {
		t.Fatalf("observed %d", code)
	}

	inflight := dial(t, addr)
	inflight.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-arrived
	// The request before it may still be counted for a moment after its
	// answer went out.
	waitFor(t, func() bool { return a.up.Active() == 1 }, "the slow request alone counted as active")
	r.cur.Store(b.up)
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(http.MethodGet); body != "b" {
		t.Fatalf("after the route change the kept connection got %q", body)
	}
	release()
	if _, body := inflight.response(http.MethodGet); body != "a" {
		t.Fatalf("request in flight during the change got %q", body)
	}
	for range 2 {
		if code := <-seen; code != 200 {
			t.Fatalf("observed %d", code)
		}
	}
	waitFor(t, func() bool { return a.up.Active() == 0 }, "the old upstream drained")

	r.cur.Store(nil)
	c.send("POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	if resp, body := c.response(http.MethodPost); body != "local /form" || resp.Close {
		t.Fatalf("local answer to a POST: %q close=%v", body, resp.Close)
	}
	waiting := dial(t, addr)
	waiting.send("PUT /file HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n")
	if resp, body := waiting.response(http.MethodPut); body != "local /file" || !resp.Close {
		t.Fatalf("local answer to a client waiting for 100 Continue: %q close=%v", body, resp.Close)
	}
	c.send("HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.response(http.MethodHead); body != "" || resp.ContentLength != int64(len("local /x")) {
		t.Fatalf("local HEAD: %q length %d", body, resp.ContentLength)
	}
	select {
	case code := <-seen:
		t.Fatalf("a local answer was observed (%d)", code)
	default:
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestRelayUpstreamGoneOrStale: nothing listening answers Unavailable; a
// connection the app closed while idle is noticed and replaced before the
// next request is sent on it, a GET or a POST.
func TestRelayUpstreamGoneOrStale(t *testing.T) {
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Method, b)
	}), func(s *http.Server) { s.IdleTimeout = 100 * time.Millisecond })
	var r router
	seen := make(chan int, 10)
	_, addr := startRelay(t, &r, func(s *Server) {
		s.Observe = func(o Response) {
			if o.Local != (o.Code == http.StatusServiceUnavailable) {
				t.Errorf("observed %+v: only the local 503 is Local", o)
			}
			seen <- o.Code
		}
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	r.cur.Store(NewUpstream(gone))
	c := dial(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.response(http.MethodGet); resp.StatusCode != 503 || body != "down" || resp.Close {
		t.Fatalf("upstream gone: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	if code := <-seen; code != 503 {
		t.Fatalf("observed %d", code)
	}

	r.cur.Store(u.up)
	for _, step := range []struct {
		idle        bool // sent once the app closed the idle connection
		method, req string
	}{
		{false, "GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{true, "GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{true, "POST", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"},
	} {
		if step.idle {
			waitFor(t, func() bool { return u.closed.Load() == u.conns.Load() }, "the app to close its idle connection")
		}
		c.send(step.req)
		resp, body := c.response(step.method)
		if resp.StatusCode != 200 || !strings.HasPrefix(body, step.method) {
			t.Fatalf("%s (after an idle close: %v): %d %q", step.method, step.idle, resp.StatusCode, body)
		}
	}
	if n := u.conns.Load(); n != 3 {
		t.Fatalf("upstream connections: %d, want 3 (one, then two replacing closed ones)", n)
	}
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.response(http.MethodGet)
	if n := u.conns.Load(); n != 3 {
		t.Fatalf("a request right after another took a new upstream connection (%d)", n)
	}
}

func TestRelayRefusesBadRequests(t *testing.T) {
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "app") }))
	var r router
	r.cur.Store(u.up)
	_, addr := startRelay(t, &r)
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"garbage", "NOT HTTP\r\n\r\n", 400},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"absolute target, no Host", "GET http://evil.test/abs HTTP/1.1\r\n\r\n", 400},
		{"absolute target, bad Host", "GET http://evil.test/abs HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"bad header name", "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400},
		{"smuggling", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405},
		{"unknown expectation", "GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", 417},
		{"huge header", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", maxHeaderBytes+8192) + "\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			go io.WriteString(c, tc.req) // the huge header may not be read whole
			resp, body := c.response(http.MethodGet)
			if resp.StatusCode != tc.status || !resp.Close {
				t.Fatalf("%d %q close=%v, want %d and close", resp.StatusCode, body, resp.Close, tc.status)
			}
			if !c.closed() {
				t.Fatal("connection left open")
			}
		})
	}
	t.Run("slow header", func(t *testing.T) {
		_, addr := startRelay(t, &r, func(s *Server) { s.HeaderTimeout = 200 * time.Millisecond })
		c := dial(t, addr)
		c.send("GET / HTTP/1.1\r\nHost: a\r\n")
		start := time.Now()
		if !c.closed() || time.Since(start) > time.Second {
			t.Fatalf("a header never finished kept the connection for %s", time.Since(start))
		}
	})
	t.Run("absolute target with a Host", func(t *testing.T) {
		c := dial(t, addr)
		c.send("GET http://slot.test/abs HTTP/1.1\r\nHost: other.test\r\n\r\n")
		if resp, body := c.response(http.MethodGet); resp.StatusCode != 200 || body != "app" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("pipelined", func(t *testing.T) {
		c := dial(t, addr)
		c.send("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
		for range 2 {
			if resp, body := c.response(http.MethodGet); resp.StatusCode != 200 || body != "app" {
				t.Fatalf("pipelined: %d %q", resp.StatusCode, body)
			}
		}
	})
}

// TestRelayTunnelsUpgrades: a 101 switches the connection to a byte tunnel
// that passes half-closes on; a refused upgrade is an ordinary response.
func TestRelayTunnelsUpgrades(t *testing.T) {
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "no such protocol", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		got, _ := io.ReadAll(brw) // until the client's half-close
		conn.Write([]byte("echo: "))
		conn.Write(got)
	}))
	var r router
	r.cur.Store(u.up)
	_, addr := startRelay(t, &r)

	c := dial(t, addr)
	c.send("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly ")
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "echo" {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	c.send("bytes")
	if err := c.Conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c.r)
	if err != nil || string(got) != "echo: early bytes" {
		t.Fatalf("through the tunnel: %q %v", got, err)
	}
	waitFor(t, func() bool { return u.up.Active() == 0 }, "the tunnel to end")

	c = dial(t, addr)
	c.send("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: other\r\n\r\n")
	if resp, body := c.response(http.MethodGet); resp.StatusCode != 400 || !strings.Contains(body, "no such protocol") {
		t.Fatalf("refused upgrade: %d %q", resp.StatusCode, body)
	}
	c.send("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := c.response(http.MethodGet); resp.StatusCode != 400 {
		t.Fatalf("the connection after a refused upgrade: %d", resp.StatusCode)
	}
}

// TestRelayShutdown: idle connections close at once, a request in flight
// finishes with Connection: close, and Shutdown returns once it has.
func TestRelayShutdown(t *testing.T) {
	slow := make(chan struct{})
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		<-slow
		io.WriteString(w, "finished")
	}))
	release := sync.OnceFunc(func() { close(slow) })
	t.Cleanup(release) // before the upstream's Close, which waits for its handlers
	var r router
	r.cur.Store(u.up)
	s := &Server{Route: r.route}
	addr, served := serve(t, s)

	idle := dial(t, addr)
	busy := dial(t, addr)
	busy.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, func() bool { return u.up.Active() == 1 }, "the request in flight")

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	if !idle.closed() {
		t.Fatal("an idle connection stayed open during Shutdown")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	resp, body := busy.response(http.MethodGet)
	if body != "finished" || !resp.Close {
		t.Fatalf("request in flight: %q close=%v", body, resp.Close)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}

func TestRelayShutdownDeadlineClosesEverything(t *testing.T) {
	block := make(chan struct{})
	u := newUpstream(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	t.Cleanup(func() { close(block) }) // before the upstream's Close, which waits for its handler
	var r router
	r.cur.Store(u.up)
	s := &Server{Route: r.route}
	addr, _ := serve(t, s)
	c := dial(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, func() bool { return u.up.Active() == 1 }, "the request in flight")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline", err)
	}
	if !c.closed() {
		t.Fatal("the connection outlived the Shutdown deadline")
	}
}

// TestRelayConcurrentClients runs many keep-alive clients at once through
// one relay (for the race detector) and checks every answer.
func TestRelayConcurrentClients(t *testing.T) {
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }))
	var r router
	r.cur.Store(u.up)
	_, addr := startRelay(t, &r)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := range 50 {
				path := fmt.Sprintf("/%d/%d", w, i)
				resp, err := client.Get("http://" + addr + path)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != path {
					errs <- fmt.Errorf("%s answered %q", path, b)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
