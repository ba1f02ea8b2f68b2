package relay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Connection states, for Shutdown.
const (
	stateActive int32 = iota // reading or answering a request
	stateIdle                // waiting for the next request
	stateTunnel              // upgraded: bytes both ways
)

// maxHeaderBytes bounds a request's header, as net/http's default does.
const maxHeaderBytes = http.DefaultMaxHeaderBytes + 4096

// conn is one client connection and the upstream connection pinned to it.
type conn struct {
	srv   *Server
	nc    net.Conn
	limit *limitedReader
	br    *bufio.Reader
	bw    *bufio.Writer
	// pinned is used by the connection's goroutine; Shutdown may close it.
	pinned atomic.Pointer[upstreamConn]
	// state is read by Shutdown and the sweep; moves to and from idle
	// happen under idleMu, so that they interrupt only a connection still
	// idle, and touch its pinned upstream connection only then.
	state  atomic.Int32
	idleMu sync.Mutex
	// Under idleMu: when the wait for the next request ends (UnixNano),
	// and whether it was interrupted (its read deadline is in the past).
	idleUntil   int64
	interrupted bool
	// accepted is when the connection was accepted; served whether it
	// has carried a request (used by the connection's goroutine only).
	accepted time.Time
	served   bool
	// waiting is the side task of a request without a body whose watch
	// has not started (see clientSide).
	waiting atomic.Pointer[clientSide]
}

func newConn(s *Server, nc net.Conn) *conn {
	limit := &limitedReader{r: nc, n: math.MaxInt64}
	return &conn{srv: s, nc: nc, limit: limit, br: bufio.NewReader(limit), bw: bufio.NewWriter(nc), accepted: time.Now()}
}

// serve relays the connection's requests until either side closes it. A
// panic (in a handler or hook) ends the connection, not the program.
func (c *conn) serve() {
	defer func() {
		if v := recover(); v != nil {
			c.srv.logger().Error("relay: panic serving a connection", "client", c.nc.RemoteAddr().String(),
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
		c.dropUpstream()
		_ = c.nc.Close()
		c.srv.untrack(c)
	}()
	for c.waitForRequest() {
		req, status, err := c.readRequest()
		if err != nil {
			if status != 0 {
				c.refuse(status, err)
			}
			return
		}
		if !c.answer(req) || c.srv.closing.Load() {
			return
		}
	}
}

// waitForRequest blocks until the next request's first byte arrives; it
// reports false when the connection ended, the server is closing, or the
// wait passed its deadline (see Server.sweepLoop): HeaderTimeout from the
// accept for the first request, IdleTimeout for the next ones.
func (c *conn) waitForRequest() bool {
	until := c.accepted.Add(c.srv.headerTimeout())
	if c.served {
		until = time.Now().Add(c.srv.idleTimeout())
	}
	c.served = true
	c.idleMu.Lock()
	c.idleUntil = until.UnixNano()
	c.state.Store(stateIdle)
	c.idleMu.Unlock()
	if c.srv.closing.Load() {
		return false
	}
	if _, err := c.br.Peek(1); err != nil {
		return false
	}
	c.idleMu.Lock()
	defer c.idleMu.Unlock()
	c.state.Store(stateActive)
	if c.interrupted {
		// Interrupted as the byte arrived, while taken for idle: this
		// request is still served.
		c.interrupted = false
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	return true
}

// interrupt wakes a connection waiting for its next request, for Shutdown.
func (c *conn) interrupt() {
	c.idleMu.Lock()
	defer c.idleMu.Unlock()
	c.interruptLocked()
}

// interruptLocked is interrupt with idleMu held.
func (c *conn) interruptLocked() {
	if c.state.Load() == stateIdle {
		c.interrupted = true
		_ = c.nc.SetReadDeadline(longAgo)
	}
}

// abort closes the connection and its upstream one, for Shutdown.
func (c *conn) abort() {
	_ = c.nc.Close()
	if u := c.pinned.Load(); u != nil {
		_ = u.nc.Close()
	}
}

// longAgo is a deadline in the past: it wakes a blocked read at once.
var longAgo = time.Unix(1, 0)

// readRequest reads and checks a request's header as net/http's server
// does; on a bad request it returns the status to refuse it with.
func (c *conn) readRequest() (*http.Request, int, error) {
	// A header that is here whole needs no deadline (and a deadline set
	// and cleared per request would cost a timer each). Its raw bytes stay
	// in the buffer while it is parsed; one that comes in pieces is
	// recorded as it is read: checkHeader and the framing look at fields
	// that http.ReadRequest drops.
	raw, whole := bufferedHeader(c.br)
	if !whole {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.headerTimeout()))
		c.limit.record = bytes.Clone(raw)
		c.limit.recording = true
	}
	c.limit.n = maxHeaderBytes
	req, err := http.ReadRequest(c.br)
	tooLarge := c.limit.n <= 0
	c.limit.n = math.MaxInt64
	if !whole {
		_ = c.nc.SetReadDeadline(time.Time{})
		raw, c.limit.record, c.limit.recording = c.limit.record, nil, false
	}
	switch {
	case tooLarge:
		return nil, http.StatusRequestHeaderFieldsTooLarge, errors.New("request header too large")
	case errors.Is(err, io.EOF), isTimeout(err):
		return nil, 0, err
	case err != nil:
		return nil, http.StatusBadRequest, err
	case req.ProtoMajor != 1:
		return nil, http.StatusHTTPVersionNotSupported, errors.New("unsupported protocol version")
	case req.Method == http.MethodConnect:
		return nil, http.StatusMethodNotAllowed, errors.New("CONNECT is not supported")
	case len(req.Header["Expect"]) > 0 && !continueAsked(req.Header):
		return nil, http.StatusExpectationFailed, errors.New("unsupported Expect")
	}
	if err := checkHeader(req, raw); err != nil {
		return nil, http.StatusBadRequest, err
	}
	if _, both := firstField(raw, "content-length"); both && isChunked(req.TransferEncoding) {
		// Both Content-Length and Transfer-Encoding: the body is read
		// as chunked (http.ReadRequest dropped the length), and the
		// connection closes after the response (RFC 9112 §6.1), as the
		// message may be a smuggling attempt.
		req.Close = true
	}
	req.RemoteAddr = c.nc.RemoteAddr().String()
	return req, 0, nil
}

// bufferedHeader returns what br holds and whether that is a whole
// request header. The bytes stay valid until br reads again.
func bufferedHeader(br *bufio.Reader) ([]byte, bool) {
	b, _ := br.Peek(br.Buffered())
	return b, bytes.Contains(b, []byte("\r\n\r\n"))
}

// rawFields yields the values of the fields named name (lower case) in a
// raw request header (maybe followed by a body, which is not looked at).
func rawFields(raw []byte, name string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for line := range bytes.Lines(raw) {
			line = bytes.TrimRight(line, "\r\n")
			if len(line) == 0 {
				return // the end of the header
			}
			k, v, ok := bytes.Cut(line, []byte(":"))
			if ok && strings.EqualFold(string(k), name) && !yield(string(bytes.Trim(v, " \t"))) {
				return
			}
		}
	}
}

// firstField returns the first value of the field name in a raw header.
func firstField(raw []byte, name string) (string, bool) {
	for v := range rawFields(raw, name) {
		return v, true
	}
	return "", false
}

// checkHeader refuses what net/http's server refuses: a missing or
// malformed Host field, also when the target is in absolute form (then
// req.Host is the target's, and only raw, the header as it came, tells
// whether the field was there: http.ReadRequest took it out, having
// refused a repeated one), and invalid header names or values.
func checkHeader(req *http.Request, raw []byte) error {
	host, present := req.Host, req.Host != ""
	if req.URL.IsAbs() {
		host, present = firstField(raw, "host")
		present = present || !req.ProtoAtLeast(1, 1)
	}
	switch {
	case req.ProtoAtLeast(1, 1) && !present:
		return errors.New("missing required Host header")
	case host != "" && !httpguts.ValidHostHeader(host):
		return errors.New("malformed Host header")
	case req.Host != "" && !httpguts.ValidHostHeader(req.Host):
		return errors.New("malformed Host in the target")
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return errors.New("invalid header name")
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return errors.New("invalid header value")
			}
		}
	}
	return nil
}

// refuse answers a bad request; the connection then ends, as net/http
// ends it.
func (c *conn) refuse(status int, err error) {
	msg := http.StatusText(status)
	if status == http.StatusBadRequest {
		msg += ": " + err.Error()
	}
	_, _ = c.bw.WriteString("HTTP/1.1 " + statusLine(status, "") + "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" + msg)
	if c.bw.Flush() == nil {
		c.linger()
	}
}

// linger prepares the close of a connection whose client may still be
// sending (a body nobody reads): closing with unread bytes would reset the
// connection and could destroy the answer before the client reads it. It
// closes our side for writing and reads what the client still sends, for a
// moment.
func (c *conn) linger() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = c.nc.SetReadDeadline(time.Now().Add(rstAvoidanceDelay))
		_, _ = io.Copy(io.Discard, c.nc)
	}
}

// rstAvoidanceDelay bounds the wait for a refused client to stop sending.
const rstAvoidanceDelay = 500 * time.Millisecond

// answer serves one request, from its upstream or locally; it reports
// whether the connection may carry another.
func (c *conn) answer(req *http.Request) bool {
	for {
		up := c.srv.Route()
		if up == nil {
			h := c.srv.Local
			if h == nil {
				h = http.NotFoundHandler()
			}
			_, keep := c.answerLocally(h, req, true)
			return keep
		}
		// Counted first, checked second: a route change that happened in
		// between is seen here, and one that happens later waits for this
		// request to finish (Active).
		up.active.Add(1)
		if c.srv.Route() != up {
			up.active.Add(-1)
			continue
		}
		return c.relayCounted(up, req)
	}
}

func (c *conn) relayCounted(up *Upstream, req *http.Request) bool {
	defer up.active.Add(-1)
	return c.relay(up, req)
}

// limitedReader is the connection's reader with a byte budget for a
// request's header; reads fail once it is spent. While recording is set,
// what it reads is appended to record.
type limitedReader struct {
	r         io.Reader
	n         int64
	recording bool
	record    []byte
}

var errBudgetSpent = errors.New("request header too large")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errBudgetSpent
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.recording {
		l.record = append(l.record, p[:n]...)
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// statusLine is "code reason", with the standard reason when none is given.
func statusLine(code int, reason string) string {
	if reason == "" {
		reason = http.StatusText(code)
	}
	return strconv.Itoa(code) + " " + reason
}

// wantsUpgrade reports whether a request asks to switch protocols.
func wantsUpgrade(h http.Header) bool {
	return h.Get("Upgrade") != "" && headerHasToken(h, "Connection", "upgrade")
}

// headerHasToken reports whether a comma-separated header lists token.
func headerHasToken(h http.Header, key, token string) bool {
	for t := range headerTokens(h, key) {
		if strings.EqualFold(t, token) {
			return true
		}
	}
	return false
}

// headerTokens yields the non-empty items of a comma-separated header.
func headerTokens(h http.Header, key string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, v := range h[key] {
			for t := range strings.SplitSeq(v, ",") {
				if t = strings.TrimSpace(t); t != "" && !yield(t) {
					return
				}
			}
		}
	}
}
