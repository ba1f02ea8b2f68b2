package relay

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fuzzRelay serves a relay in front of an upstream for a fuzz target and
// returns the relay's address; its timeouts are short so that an input
// that leaves a request unfinished ends quickly.
func fuzzRelay(f *testing.F, up string) string {
	f.Helper()
	target := NewUpstream(up)
	s := &Server{Route: func() *Upstream { return target }, HeaderTimeout: time.Second, IdleTimeout: time.Second, Log: slog.New(slog.DiscardHandler)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// exchange sends in to addr, half-closes, and returns what comes back
// before the relay closes; it fails when the relay neither answers nor
// closes within 10 s.
func exchange(t *testing.T, addr string, in []byte) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write(in)
	_ = c.(*net.TCPConn).CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil && !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("the relay neither answered nor closed: %v", err)
	}
	return out
}

// checkResponses fails unless out is a sequence of HTTP/1.1 responses
// that net/http can read (possibly the last one cut short by a close).
func checkResponses(t *testing.T, in, out []byte) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(out))
	for {
		if _, err := br.Peek(1); err != nil {
			return
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("input %q: the relay sent what is no HTTP response: %v\n%q", in, err, out)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// FuzzRelayRequest: whatever a client sends (request line, header,
// chunked or sized body, pipelined requests), the relay does not panic or
// hang and sends back only well-formed HTTP responses.
func FuzzRelayRequest(f *testing.F) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Len", strings.Repeat("n", int(n%7)))
		io.WriteString(w, r.Method+" "+r.URL.Path)
	}))
	f.Cleanup(up.Close)
	addr := fuzzRelay(f, up.Listener.Addr().String())
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nTrailer: t\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n X-Folded: y\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
		"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkResponses(t, in, exchange(t, addr, in))
	})
}

// FuzzRelayResponse: whatever the app answers (status line, header,
// chunked or sized body, trailers), the relay does not panic or hang and
// sends the client only well-formed HTTP responses.
func FuzzRelayResponse(f *testing.F) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	answers := make(chan []byte, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				select {
				case a := <-answers:
					_, _ = c.Write(a)
				case <-time.After(5 * time.Second):
				}
			}()
		}
	}()
	addr := fuzzRelay(f, ln.Addr().String())
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: T\r\n\r\n2\r\nok\r\n0\r\nT: v\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nbytes",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 999 Odd\r\nX: a\r\n b\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nold",
		"garbage\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		answers <- answer
		out := exchange(t, addr, []byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
		select {
		case <-answers: // the relay never asked the app (it cannot have)
		default:
		}
		checkResponses(t, answer, out)
	})
}
