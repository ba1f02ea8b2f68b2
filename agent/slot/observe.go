package slot

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"time"
)

// observer reports a proxied request to Config.Observe once, when its
// response header is sent: the status code and the time it took.
//
// It wraps the server's ResponseWriter. Unwrap lets http.ResponseController
// reach the server's writer, so the proxy still flushes streamed responses
// at once; Hijack is wrapped rather than left to Unwrap because a WebSocket
// upgrade never calls WriteHeader: the proxy hijacks the connection and
// writes the 101 itself.
type observer struct {
	http.ResponseWriter
	start  time.Time
	report func(code int, d time.Duration)
	done   bool
}

// WriteHeader reports the final status; informational (1xx) headers are
// passed on without ending the wait.
func (o *observer) WriteHeader(code int) {
	if code >= 200 {
		o.observe(code)
	}
	o.ResponseWriter.WriteHeader(code)
}

// Write sends the implicit 200 when no header was written.
func (o *observer) Write(b []byte) (int, error) {
	o.observe(http.StatusOK)
	return o.ResponseWriter.Write(b)
}

// Hijack hands the connection over for a protocol switch and reports it as
// a 101.
func (o *observer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(o.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	o.observe(http.StatusSwitchingProtocols)
	return conn, brw, nil
}

// Unwrap is the server's ResponseWriter, for http.ResponseController.
func (o *observer) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// observe reports the first status only.
func (o *observer) observe(code int) {
	if !o.done {
		o.done = true
		o.report(code, time.Since(o.start))
	}
}

// serveObserved serves one proxied request through h with an observer; a
// handler that wrote nothing is reported with the 200 net/http sends for it.
func (s *Slot) serveObserved(h http.Handler, w http.ResponseWriter, r *http.Request) {
	o := &observer{ResponseWriter: w, start: time.Now(), report: func(code int, d time.Duration) {
		s.cfg.Observe(s.cfg.Name, code, d)
	}}
	defer o.observe(http.StatusOK)
	h.ServeHTTP(o, r)
}
