package relay

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"time"
)

// drainLimit is how much of an unread request body is read and dropped to
// keep the connection, as net/http's server does; past it the connection
// closes.
const drainLimit = 256 << 10

// unavailable answers a request whose upstream failed, with the server's
// Unavailable handler, and reports it to Observe. Unless the request's
// body is untouched, the connection then closes: where its body ends on
// the connection is unknown.
func (c *conn) unavailable(req *http.Request, start time.Time, untouched bool) bool {
	h := c.srv.Unavailable
	if h == nil {
		h = http.HandlerFunc(serviceUnavailable)
	}
	code, keep := c.answerLocally(h, req, untouched)
	c.srv.observe(code, start, true)
	return keep
}

// answerLocally answers req with h, buffered; it returns the status sent
// and whether the connection may carry another request. The body, if
// there is one, is read and dropped when drain is set (and not too long).
func (c *conn) answerLocally(h http.Handler, req *http.Request, drain bool) (int, bool) {
	w := &bufferedResponse{header: http.Header{}}
	h.ServeHTTP(w, req)
	if w.code == 0 {
		w.code = http.StatusOK
	}
	drained := req.Body == http.NoBody
	if !drained && drain && !expectsContinue(req) {
		// A client waiting for 100 Continue has not sent its body: the
		// answer goes without asking for it, and the connection closes.
		n, err := io.CopyN(io.Discard, req.Body, drainLimit+1)
		drained = err == io.EOF && n <= drainLimit
	}
	keep := drained && !req.Close && req.ProtoAtLeast(1, 1) && !c.srv.closing.Load()

	_, _ = c.bw.WriteString("HTTP/1.1 " + statusLine(w.code, "") + "\r\n")
	if w.header.Get("Date") == "" {
		w.header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	_ = w.header.WriteSubset(c.bw, responseSkip)
	if w.code != http.StatusNoContent && w.code != http.StatusNotModified {
		_, _ = c.bw.WriteString("Content-Length: " + strconv.Itoa(w.body.Len()) + "\r\n")
	}
	if !keep {
		_, _ = c.bw.WriteString("Connection: close\r\n")
	}
	_, _ = c.bw.WriteString("\r\n")
	if req.Method != http.MethodHead {
		_, _ = c.bw.Write(w.body.Bytes())
	}
	return w.code, c.bw.Flush() == nil && keep
}

// serviceUnavailable is the answer of a Server with no Unavailable handler.
func serviceUnavailable(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
}

// bufferedResponse is the http.ResponseWriter of a local answer: the whole
// response is kept until the handler returns.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

// Header is the response's header, to set before WriteHeader or Write.
func (b *bufferedResponse) Header() http.Header { return b.header }

// WriteHeader sets the status; only the first call counts.
func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

// Write appends to the body, with status 200 unless one was set.
func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}
