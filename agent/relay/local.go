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
// Unavailable handler, and reports it to Observe.
func (c *conn) unavailable(req *http.Request, start time.Time) bool {
	code, keep := c.answerLocally(c.srv.Unavailable, req)
	c.srv.observe(code, start)
	return keep
}

// answerLocally answers req with h, buffered; it returns the status sent
// and whether the connection may carry another request.
func (c *conn) answerLocally(h http.Handler, req *http.Request) (int, bool) {
	w := &bufferedResponse{header: http.Header{}}
	h.ServeHTTP(w, req)
	if w.code == 0 {
		w.code = http.StatusOK
	}
	drained := true
	switch {
	case expectsContinue(req):
		// The client has not sent the body and waits to be asked: answer
		// without asking, and close.
		drained = false
	case req.Body != http.NoBody:
		n, _ := io.CopyN(io.Discard, req.Body, drainLimit+1)
		drained = n <= drainLimit
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
