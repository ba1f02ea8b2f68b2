package relay

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawApp is an upstream that answers each request with the bytes answer
// returns for its path, written as they are.
func rawApp(t *testing.T, answer func(path string) string) *Upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(nc, answer(req.URL.Path)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return NewUpstream(ln.Addr().String())
}

// TestRelayCleansTheReasonPhrase: control bytes in an app's reason phrase
// (CR, NUL, ESC, DEL), in a final or an informational response, never
// reach the client: the standard reason goes instead. A plain one is kept.
func TestRelayCleansTheReasonPhrase(t *testing.T) {
	statuses := map[string]string{
		"/cr":    "HTTP/1.1 200 OK\rX-Injected: 1",
		"/nul":   "HTTP/1.1 200 O\x00K",
		"/esc":   "HTTP/1.1 404 \x1b[31mred",
		"/del":   "HTTP/1.1 200 OK\x7f",
		"/plain": "HTTP/1.1 200 All Fine here",
		"/hint":  "HTTP/1.1 103 Early\rX-Injected: 1\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK",
	}
	want := map[string][]string{
		"/cr":    {"HTTP/1.1 200 OK\r\n"},
		"/nul":   {"HTTP/1.1 200 OK\r\n"},
		"/esc":   {"HTTP/1.1 404 Not Found\r\n"},
		"/del":   {"HTTP/1.1 200 OK\r\n"},
		"/plain": {"HTTP/1.1 200 All Fine here\r\n"},
		"/hint":  {"HTTP/1.1 103 Early Hints\r\n", "HTTP/1.1 200 OK\r\n"},
	}
	var r router
	r.cur.Store(rawApp(t, func(path string) string { return statuses[path] + "\r\nContent-Length: 2\r\n\r\nok" }))
	_, addr := startRelay(t, &r)
	c := dial(t, addr)
	for path, lines := range want {
		c.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		for _, line := range lines {
			got, err := c.r.ReadString('\n')
			if err != nil || got != line {
				t.Fatalf("%s: status line %q (%v), want %q", path, got, err, line)
			}
			hdr, err := c.r.ReadString('\n')
			for err == nil && hdr != "\r\n" {
				if strings.Contains(hdr, "X-Injected") {
					t.Fatalf("%s: the app's reason phrase made a header: %q", path, hdr)
				}
				hdr, err = c.r.ReadString('\n')
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if b := make([]byte, 2); func() bool { _, err := io.ReadFull(c.r, b); return err != nil || string(b) != "ok" }() {
			t.Fatalf("%s: body %q", path, b)
		}
	}
}

// TestRelayClosesAfterContentLengthAndTransferEncoding: a request with both
// is read as chunked and its connection closes after the response (RFC
// 9112 §6.1), relayed or answered locally, its header whole or in pieces.
func TestRelayClosesAfterContentLengthAndTransferEncoding(t *testing.T) {
	bodies := make(chan string, 10)
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		io.WriteString(w, "app")
	}))
	var r router
	_, addr := startRelay(t, &r)
	const head, rest = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n", "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	for _, route := range []*Upstream{u.up, nil} {
		r.cur.Store(route)
		for _, pieces := range []bool{false, true} {
			c := dial(t, addr)
			if pieces {
				// The relay reads the first part alone (most likely: it is
				// the slow path a header in pieces takes).
				c.send(head)
				time.Sleep(50 * time.Millisecond)
				c.send(rest)
			} else {
				c.send(head + rest)
			}
			resp, body := c.response(http.MethodPost)
			if resp.StatusCode != 200 || !resp.Close {
				t.Fatalf("route %v, pieces %v: %d %q close=%v, want 200 and close", route, pieces, resp.StatusCode, body, resp.Close)
			}
			if !c.closed() {
				t.Fatalf("route %v, pieces %v: connection left open", route, pieces)
			}
			if route != nil {
				if b := <-bodies; b != "abc" {
					t.Fatalf("the app read %q, want the chunked body", b)
				}
			}
		}
	}
	// Transfer-Encoding alone keeps the connection.
	r.cur.Store(u.up)
	c := dial(t, addr)
	c.send("POST / HTTP/1.1\r\nHost: x\r\n" + rest)
	if resp, body := c.response(http.MethodPost); resp.Close || body != "app" {
		t.Fatalf("chunked alone: %q close=%v", body, resp.Close)
	}
}
