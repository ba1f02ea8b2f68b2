package relay

import (
	"errors"
	"sync/atomic"
	"time"
)

// watchAfter is how long a request without a body waits for its answer
// before the client's connection is watched.
const watchAfter = 100 * time.Millisecond

// clientSide runs beside the relay of one request, on the client's
// connection. It sends the request's body, if there is one, so that an
// app may answer before it has read it all, or echo it as it reads; then
// it watches for the client going away, which aborts the relay by closing
// the upstream connection (an app slow to answer, an idle stream).
//
// A request without a body is only watched once its answer takes longer
// than watchAfter: the server's watch loop starts the watch (see
// Server.watchLoop). Quick requests so cost no goroutine and no timer, and
// a timer per request would wake the runtime's network poller each time.
type clientSide struct {
	c        *conn
	u        *upstreamConn
	since    time.Time // when a request without a body began to wait
	stopping atomic.Bool
	done     chan struct{}
	// Set before done closes:
	sent    bool  // the whole body was sent
	badBody error // reading the body from the client failed
}

// watchClient starts the side task of a request; sendBody sends its body,
// nil when it has none.
func (c *conn) watchClient(u *upstreamConn, sendBody func() error) *clientSide {
	s := &clientSide{c: c, u: u, done: make(chan struct{})}
	if sendBody == nil {
		s.sent, s.since = true, time.Now()
		c.waiting.Store(s)
		c.srv.startWatchLoop()
		return s
	}
	go func() {
		defer close(s.done)
		err := sendBody()
		var re *readError
		switch {
		case err == nil:
			s.sent = true
			s.watch()
		case errors.As(err, &re) && !s.stopping.Load():
			s.badBody = re.err
			_ = u.nc.Close() // the upstream will never get a whole request
		}
	}()
	return s
}

// watchLate starts the watch of a request without a body that has waited
// watchAfter for its answer, unless it was stopped meanwhile.
func (c *conn) watchLate(now time.Time) {
	s := c.waiting.Load()
	if s == nil || now.Sub(s.since) < watchAfter || !c.waiting.CompareAndSwap(s, nil) {
		return
	}
	go func() {
		defer close(s.done)
		s.watch()
	}()
}

// watch waits for the client's next bytes: a pipelined request stays in
// the buffer; the connection's end aborts the relay.
func (s *clientSide) watch() {
	if s.stopping.Load() {
		return
	}
	if _, err := s.c.br.Peek(1); err != nil && !s.stopping.Load() {
		_ = s.u.nc.Close()
	}
}

// stop ends the task and returns why the client's body could not be read,
// if it could not. A body still being sent is cut off, which complete then
// reports.
func (s *clientSide) stop() error {
	if s.c == nil || s.c.waiting.CompareAndSwap(s, nil) {
		return nil // nothing was started
	}
	s.stopping.Store(true)
	_ = s.c.nc.SetReadDeadline(longAgo)
	_ = s.u.nc.SetWriteDeadline(longAgo)
	<-s.done
	_ = s.c.nc.SetReadDeadline(time.Time{})
	_ = s.u.nc.SetWriteDeadline(time.Time{})
	return s.badBody
}

// complete reports whether the whole body was sent; call it after stop.
func (s *clientSide) complete() bool { return s.sent }
