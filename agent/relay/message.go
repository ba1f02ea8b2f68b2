package relay

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
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
			return c.unavailable(req, start)
		}
		reused := u.used
		u.used = true
		resp, err := c.roundTrip(u, req)
		if err != nil {
			c.dropUpstream()
			if try == 0 && reused && errors.Is(err, errNoResponse) && replayable(req) {
				continue
			}
			return c.unavailable(req, start)
		}
		c.srv.observe(resp.StatusCode, start)
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return c.switchProtocols(u, resp)
		}
		return c.respond(u, req, resp)
	}
}

// expectsContinue reports whether the client waits for a 100 Continue
// before it sends the body.
func expectsContinue(req *http.Request) bool {
	return req.ProtoAtLeast(1, 1) && req.Body != http.NoBody &&
		strings.EqualFold(strings.TrimSpace(req.Header.Get("Expect")), "100-continue")
}

// roundTrip writes req to u and reads the response's header, passing
// informational (1xx) responses other than 101 on to the client.
func (c *conn) roundTrip(u *upstreamConn, req *http.Request) (*http.Response, error) {
	if err := c.writeRequest(u, req); err != nil {
		return nil, fmt.Errorf("send the request: %w: %w", errNoResponse, err)
	}
	for {
		if _, err := u.br.Peek(1); err != nil {
			return nil, fmt.Errorf("read the response: %w: %w", errNoResponse, err)
		}
		resp, err := http.ReadResponse(u.br, req)
		if err != nil {
			return nil, fmt.Errorf("read the response: %w", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		c.writeStatus(resp)
		writeHeader(c.bw, resp.Header, responseSkip, resp.Header)
		_, _ = c.bw.WriteString("\r\n")
		if err := c.bw.Flush(); err != nil {
			return nil, fmt.Errorf("pass on a %d: %w", resp.StatusCode, err)
		}
	}
}

// writeRequest writes req's header, as the upstream must see it, and its
// body to u.
func (c *conn) writeRequest(u *upstreamConn, req *http.Request) error {
	w := u.bw
	uri := req.RequestURI
	if req.URL.IsAbs() {
		uri = req.URL.RequestURI()
	}
	_, _ = w.WriteString(req.Method + " " + uri + " HTTP/1.1\r\nHost: " + req.Host + "\r\n")
	writeHeader(w, req.Header, requestSkip, req.Header)
	if headerHasToken(req.Header, "Te", "trailers") {
		_, _ = w.WriteString("Te: trailers\r\n")
	}
	if wantsUpgrade(req.Header) {
		_, _ = w.WriteString("Connection: Upgrade\r\nUpgrade: " + req.Header.Get("Upgrade") + "\r\n")
	}
	writeForwarded(w, req)
	hasBody := req.Body != http.NoBody
	chunked := hasBody && isChunked(req.TransferEncoding)
	switch {
	case chunked:
		_, _ = w.WriteString("Transfer-Encoding: chunked\r\n")
		announceTrailer(w, req.Trailer)
	case req.ContentLength > 0 || len(req.Header["Content-Length"]) > 0:
		_, _ = w.WriteString("Content-Length: " + strconv.FormatInt(req.ContentLength, 10) + "\r\n")
	}
	if _, err := w.WriteString("\r\n"); err != nil {
		return err
	}
	if !hasBody {
		return w.Flush()
	}
	return copyBody(w, req.Body, chunked, req.Trailer, c.br)
}

// writeForwarded adds the X-Forwarded headers that httputil's
// ProxyRequest.SetXForwarded sets: the client's address appended to the
// ones before it, the Host it asked for, and the scheme.
func writeForwarded(w *bufio.Writer, req *http.Request) {
	prior, had := req.Header["X-Forwarded-For"]
	if !had || prior != nil {
		ip, _, err := net.SplitHostPort(req.RemoteAddr)
		if err == nil {
			if len(prior) > 0 {
				ip = strings.Join(prior, ", ") + ", " + ip
			}
			_, _ = w.WriteString("X-Forwarded-For: " + ip + "\r\n")
		}
	}
	_, _ = w.WriteString("X-Forwarded-Host: " + req.Host + "\r\nX-Forwarded-Proto: http\r\n")
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
	writeHeader(c.bw, resp.Header, responseSkip, resp.Header)
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
	if bodyless {
		err = c.bw.Flush()
	} else {
		err = copyBody(c.bw, resp.Body, chunkedOut, resp.Trailer, u.br)
	}
	if err != nil || resp.Close || (!sized && !chunkedIn && !bodyless) {
		// The upstream closes after this response, or its connection is
		// out of step: a new one serves the next request.
		c.dropUpstream()
	} else {
		u.idleSince = time.Now()
	}
	return keep && err == nil
}

// switchProtocols passes a 101 on and tunnels the connection's bytes both
// ways until it ends; the connection then carries no further request.
func (c *conn) switchProtocols(u *upstreamConn, resp *http.Response) bool {
	c.writeStatus(resp)
	writeHeader(c.bw, resp.Header, responseSkip, resp.Header)
	_, _ = c.bw.WriteString("Connection: Upgrade\r\nUpgrade: " + resp.Header.Get("Upgrade") + "\r\n\r\n")
	if err := c.bw.Flush(); err != nil {
		return false
	}
	c.state.Store(stateTunnel)
	tunnel(c.nc, c.br, u.nc, u.br)
	return false
}

// writeStatus writes the status line of resp to the client.
func (c *conn) writeStatus(resp *http.Response) {
	reason := strings.TrimSpace(strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode)))
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
// the message's Connection header (in conn) names as hop-by-hop.
func writeHeader(w *bufio.Writer, h http.Header, skip map[string]bool, conn http.Header) {
	if listed := conn["Connection"]; len(listed) > 0 {
		skip = maps.Clone(skip)
		for _, v := range listed {
			for t := range strings.SplitSeq(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					skip[textproto.CanonicalMIMEHeaderKey(t)] = true
				}
			}
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
			return rerr
		}
	}
	if chunked {
		_, _ = w.WriteString("0\r\n")
		_ = trailer.Write(w)
		_, _ = w.WriteString("\r\n")
	}
	return w.Flush()
}
