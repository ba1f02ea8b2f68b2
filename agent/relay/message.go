package relay

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errNoResponse marks a failure before the upstream sent any byte of a
// response: the request may be replayed on a fresh connection.
var errNoResponse = errors.New("no response")

// relay sends req to up and the response back; it reports whether the
// client connection may carry another request.
func (c *conn) relay(up *Upstream, req *http.Request) bool {
	start := time.Now()
	if expectsContinue(req) {
		// The body will be read at once: tell the client to send it.
		req.Header.Del("Expect")
		_, _ = c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := c.bw.Flush(); err != nil {
			return false
		}
	}
	for try := 0; ; try++ {
		u, err := c.upstreamFor(up)
		if err != nil {
			return c.unavailable(req, start, true)
		}
		reused := u.used
		u.used = true
		side, err := c.sendRequest(u, req)
		var resp *http.Response
		if err == nil {
			resp, err = c.readResponseHeader(u, req)
		}
		if err != nil {
			badBody := side.stop()
			c.dropUpstream()
			switch {
			case badBody != nil:
				c.refuse(http.StatusBadRequest, badBody)
				return false
			case try == 0 && reused && errors.Is(err, errNoResponse) && replayable(req):
				continue
			}
			return c.unavailable(req, start, false)
		}
		c.srv.observe(resp.StatusCode, start, false)
		if resp.StatusCode == http.StatusSwitchingProtocols {
			side.stop()
			return c.switchProtocols(u, resp)
		}
		keep := c.respond(u, req, resp)
		if side.stop() != nil || !side.complete() {
			// The app answered before it had the whole body: the rest of
			// it is still on both connections.
			c.dropUpstream()
			c.linger()
			return false
		}
		return keep
	}
}

// continueAsked reports whether a request's Expect header is
// "100-continue", the only expectation there is.
func continueAsked(h http.Header) bool {
	return strings.EqualFold(strings.TrimSpace(h.Get("Expect")), "100-continue")
}

// expectsContinue reports whether the client waits for a 100 Continue
// before it sends the body.
func expectsContinue(req *http.Request) bool {
	return req.ProtoAtLeast(1, 1) && req.Body != http.NoBody && continueAsked(req.Header)
}

// maxInformational bounds the 1xx responses passed on before the final
// one, as net/http's Transport does.
const maxInformational = 5

// readResponseHeader reads the response's header, passing informational
// (1xx) responses other than 101 on to the client.
func (c *conn) readResponseHeader(u *upstreamConn, req *http.Request) (*http.Response, error) {
	for n := 0; ; n++ {
		if _, err := u.br.Peek(1); err != nil {
			return nil, fmt.Errorf("read the response: %w: %w", errNoResponse, err)
		}
		u.limit.n = maxResponseHeaderBytes
		resp, err := http.ReadResponse(u.br, req)
		u.limit.n = math.MaxInt64
		switch {
		case err != nil:
			return nil, fmt.Errorf("read the response: %w", err)
		case resp.StatusCode < 100 || resp.StatusCode > 999:
			return nil, fmt.Errorf("invalid status %d", resp.StatusCode)
		case resp.StatusCode == http.StatusSwitchingProtocols:
			if !wantsUpgrade(req.Header) || !strings.EqualFold(req.Header.Get("Upgrade"), resp.Header.Get("Upgrade")) {
				return nil, errors.New("a 101 the request did not ask for")
			}
			return resp, nil
		case resp.StatusCode >= 200:
			return resp, nil
		case n >= maxInformational:
			return nil, errors.New("too many informational responses")
		case !req.ProtoAtLeast(1, 1):
			continue // HTTP/1.0 has no informational responses
		}
		c.writeStatus(resp)
		writeHeader(c.bw, resp.Header, responseSkip)
		_, _ = c.bw.WriteString("\r\n")
		if err := c.bw.Flush(); err != nil {
			return nil, fmt.Errorf("pass on a %d: %w", resp.StatusCode, err)
		}
	}
}

// sendRequest writes req's header, as the upstream must see it, to u, and
// starts the side task that sends its body and then watches the client
// (see clientSide).
func (c *conn) sendRequest(u *upstreamConn, req *http.Request) (*clientSide, error) {
	w := u.bw
	uri := req.RequestURI
	if req.URL.IsAbs() {
		uri = req.URL.RequestURI()
	}
	_, _ = w.WriteString(req.Method + " " + uri + " HTTP/1.1\r\nHost: " + req.Host + "\r\n")
	writeHeader(w, req.Header, requestSkip)
	if headerHasToken(req.Header, "Te", "trailers") {
		_, _ = w.WriteString("Te: trailers\r\n")
	}
	if wantsUpgrade(req.Header) {
		_, _ = w.WriteString("Connection: Upgrade\r\nUpgrade: " + req.Header.Get("Upgrade") + "\r\n")
	}
	if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		_, _ = w.WriteString("X-Forwarded-For: " + ip + "\r\n")
	}
	_, _ = w.WriteString("X-Forwarded-Host: " + req.Host + "\r\nX-Forwarded-Proto: http\r\n")
	hasBody := req.Body != http.NoBody
	chunked := hasBody && isChunked(req.TransferEncoding)
	switch {
	case chunked:
		_, _ = w.WriteString("Transfer-Encoding: chunked\r\n")
		announceTrailer(w, req.Trailer)
	case req.ContentLength > 0 || len(req.Header["Content-Length"]) > 0:
		_, _ = w.WriteString("Content-Length: " + strconv.FormatInt(req.ContentLength, 10) + "\r\n")
	}
	_, _ = w.WriteString("\r\n")
	if !hasBody {
		if err := w.Flush(); err != nil {
			return &clientSide{sent: true}, fmt.Errorf("send the request: %w: %w", errNoResponse, err)
		}
		return c.watchClient(u, nil), nil
	}
	return c.watchClient(u, func() error { return copyBody(w, req.Body, chunked, req.Trailer, c.br) }), nil
}

// respond relays a final response to the client; it reports whether the
// client connection may carry another request.
func (c *conn) respond(u *upstreamConn, req *http.Request, resp *http.Response) bool {
	code := resp.StatusCode
	bodyless := req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	chunkedIn := isChunked(resp.TransferEncoding)
	sized := !chunkedIn && resp.ContentLength >= 0
	// A response that ends when the upstream closes cannot be framed for an
	// HTTP/1.0 client: it ends with the connection too.
	keep := !req.Close && req.ProtoAtLeast(1, 1) && !c.srv.closing.Load()
	chunkedOut := !bodyless && !sized && keep

	c.writeStatus(resp)
	writeHeader(c.bw, resp.Header, responseSkip)
	if _, ok := resp.Header["Date"]; !ok {
		_, _ = c.bw.WriteString("Date: " + time.Now().UTC().Format(http.TimeFormat) + "\r\n")
	}
	switch {
	case bodyless:
		if v := resp.Header["Content-Length"]; len(v) > 0 && code != http.StatusNoContent {
			_, _ = c.bw.WriteString("Content-Length: " + v[0] + "\r\n")
		}
	case sized:
		_, _ = c.bw.WriteString("Content-Length: " + strconv.FormatInt(resp.ContentLength, 10) + "\r\n")
	case chunkedOut:
		_, _ = c.bw.WriteString("Transfer-Encoding: chunked\r\n")
		announceTrailer(c.bw, resp.Trailer)
	}
	if !keep {
		_, _ = c.bw.WriteString("Connection: close\r\n")
	}
	_, _ = c.bw.WriteString("\r\n")

	var err error
	switch {
	case bodyless:
		err = c.bw.Flush()
	case u.br.Buffered() == 0:
		// Nothing of the body is here yet (a stream, a slow app): the
		// header goes now, as net/http's ReverseProxy sends it.
		if err = c.bw.Flush(); err == nil {
			err = copyBody(c.bw, resp.Body, chunkedOut, resp.Trailer, u.br)
		}
	default:
		err = copyBody(c.bw, resp.Body, chunkedOut, resp.Trailer, u.br)
	}
	// The upstream closes after this response, or sent more than it (an
	// app out of step with its own framing): a new connection serves the
	// next request.
	if err != nil || resp.Close || (!sized && !chunkedIn && !bodyless) || u.br.Buffered() > 0 {
		c.dropUpstream()
	}
	return keep && err == nil
}

// switchProtocols passes a 101 on and tunnels the connection's bytes both
// ways until it ends; the connection then carries no further request.
func (c *conn) switchProtocols(u *upstreamConn, resp *http.Response) bool {
	c.writeStatus(resp)
	writeHeader(c.bw, resp.Header, responseSkip)
	_, _ = c.bw.WriteString("Connection: Upgrade\r\nUpgrade: " + resp.Header.Get("Upgrade") + "\r\n\r\n")
	if err := c.bw.Flush(); err != nil {
		return false
	}
	c.state.Store(stateTunnel)
	tunnel(c.nc, c.br, u.nc, u.br)
	return false
}

// writeStatus writes the status line of resp to the client: with the
// app's reason phrase when it is plain visible ASCII and spaces, else with
// the standard one (a CR, NUL or escape in it must not reach the client).
func (c *conn) writeStatus(resp *http.Response) {
	reason := strings.TrimSpace(strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode)))
	if strings.ContainsFunc(reason, func(r rune) bool { return r < ' ' || r > '~' }) {
		reason = ""
	}
	_, _ = c.bw.WriteString("HTTP/1.1 " + statusLine(resp.StatusCode, reason) + "\r\n")
}

// Headers never passed on as they are: hop-by-hop ones (as httputil's
// ReverseProxy drops them), the framing the relay writes itself, and for
// requests the Host and forwarding headers it sets.
var (
	hopByHop     = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length"}
	responseSkip = skipSet(hopByHop...)
	requestSkip  = skipSet(append(hopByHop, "Host", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto")...)
)

func skipSet(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// writeHeader writes h without the skipped fields and without those that
// its Connection header names as hop-by-hop.
func writeHeader(w *bufio.Writer, h http.Header, skip map[string]bool) {
	if len(h["Connection"]) > 0 {
		skip = maps.Clone(skip)
		for t := range headerTokens(h, "Connection") {
			skip[textproto.CanonicalMIMEHeaderKey(t)] = true
		}
	}
	_ = h.WriteSubset(w, skip)
}

// announceTrailer lists a chunked body's trailer fields in its header.
func announceTrailer(w *bufio.Writer, trailer http.Header) {
	if len(trailer) == 0 {
		return
	}
	keys := make([]string, 0, len(trailer))
	for k := range trailer {
		keys = append(keys, k)
	}
	_, _ = w.WriteString("Trailer: " + strings.Join(keys, ", ") + "\r\n")
}

func isChunked(te []string) bool { return len(te) > 0 && te[0] == "chunked" }

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// readError is a failure to read a body from where it comes from, as
// opposed to writing it on.
type readError struct{ err error }

func (e *readError) Error() string { return "read the body: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// copyBody copies a decoded body to w, chunked (with its trailer) when
// chunked is set, as it is. It flushes w whenever src, the connection the
// body comes from, has nothing more buffered, so a stream's events are not
// held back, and at the end.
func copyBody(w *bufio.Writer, body io.Reader, chunked bool, trailer http.Header, src *bufio.Reader) error {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if chunked {
				_, _ = w.WriteString(strconv.FormatInt(int64(n), 16) + "\r\n")
			}
			_, _ = w.Write(buf[:n])
			if chunked {
				_, _ = w.WriteString("\r\n")
			}
			if src.Buffered() == 0 {
				if err := w.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return &readError{rerr}
		}
	}
	if chunked {
		_, _ = w.WriteString("0\r\n")
		_ = trailer.Write(w)
		_, _ = w.WriteString("\r\n")
	}
	return w.Flush()
}
