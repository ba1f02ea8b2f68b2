// Package relay is the slots' HTTP/1.1 reverse proxy. One goroutine serves
// each client connection: it reads a request, asks the router where it
// goes, relays it over an upstream connection pinned to that client
// connection, and relays the response back, flushing whenever the upstream
// has nothing more ready. There is no connection pool and no goroutine per
// request, so a relayed request costs little more than a TCP splice, yet
// every request is routed on its own: when the route changes, the next
// request on a kept-alive connection goes to the new upstream while the
// one in flight finishes on the old. Upgraded connections (WebSocket) are
// tunnelled as bytes once the upstream answers 101.
package relay

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Upstream is an app requests are relayed to.
type Upstream struct {
	addr   string
	active atomic.Int64
}

// NewUpstream is the app listening on addr (host:port).
func NewUpstream(addr string) *Upstream { return &Upstream{addr: addr} }

// Active is the number of requests relayed to u that have not finished; a
// tunnelled (upgraded) connection counts until it closes.
func (u *Upstream) Active() int64 { return u.active.Load() }

// ErrClosed is returned by Serve once Shutdown was called.
var ErrClosed = errors.New("relay: server closed")

// Server relays the HTTP/1.1 requests of the connections it accepts. Set
// its fields before Serve.
type Server struct {
	// Route names the upstream of the next request, or nil to answer it
	// with Local. It is called for every request.
	Route func() *Upstream
	// Local answers the requests that have no upstream (nil: 404). Its
	// response is buffered before it is sent, so it must be small.
	Local http.Handler
	// Unavailable answers a request whose upstream could not be reached or
	// failed before answering (nil: a plain 503); buffered like Local.
	Unavailable http.Handler
	// Observe, when set, is told of each relayed response when its header
	// is sent (code 101 for an upgrade; Local, with Unavailable's code, when
	// the upstream failed).
	Observe func(Response)
	// HeaderTimeout bounds the wait for a new connection's first request,
	// from the accept, and the reading of a request's header once its first
	// byte has arrived; 0 means DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// connection; 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxConns caps the client connections served at once (0: no cap).
	// One over the cap is closed as soon as it is accepted.
	MaxConns int
	// Refused, when set, is told of each connection refused over MaxConns,
	// before that connection is closed.
	Refused func()
	// Log receives what cannot be answered to anyone (a handler's panic);
	// nil means slog.Default().
	Log *slog.Logger

	closing  atomic.Bool
	watching atomic.Bool // the watch loop runs
	mu       sync.Mutex
	ln       net.Listener
	conns    map[*conn]struct{}
	sweeping bool // the sweep loop runs; under mu
}

// DefaultHeaderTimeout and DefaultIdleTimeout are the timeouts of a Server
// that sets none (the header timeout of net/http servers here; nginx's
// keepalive_timeout).
const (
	DefaultHeaderTimeout = 30 * time.Second
	DefaultIdleTimeout   = 75 * time.Second
)

// Serve accepts connections on ln and serves each in its own goroutine
// until Shutdown; it then returns ErrClosed. Other accept errors are
// retried after a short pause, as net/http does.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	s.ln = ln
	s.mu.Unlock()
	pause := time.Duration(0)
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			time.Sleep(pause)
			continue
		}
		pause = 0
		c := newConn(s, nc)
		switch s.track(c) {
		case closing:
			_ = nc.Close()
			return ErrClosed
		case full:
			// Counted before the close, so whoever sees the close sees
			// the count.
			if s.Refused != nil {
				s.Refused()
			}
			_ = nc.Close()
			continue
		}
		go c.serve()
	}
}

// What track did with a connection.
const (
	tracked = iota
	closing // the server is closing
	full    // MaxConns connections are open
)

// track adds c to the open connections, unless the server is closing or
// full, and starts the sweep loop if it does not run.
func (s *Server) track(c *conn) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing.Load():
		return closing
	case s.MaxConns > 0 && len(s.conns) >= s.MaxConns:
		return full
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	if !s.sweeping {
		s.sweeping = true
		go s.sweepLoop()
	}
	return tracked
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops accepting connections, closes the idle ones and lets the
// requests in flight finish (each connection closes after its response),
// then closes what is left (tunnels). When ctx ends first it closes every
// connection at once and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	wait := time.Millisecond
	for {
		busy := 0
		s.mu.Lock()
		for c := range s.conns {
			switch c.state.Load() {
			case stateIdle:
				c.interrupt()
			case stateActive:
				busy++
			}
		}
		s.mu.Unlock()
		if busy == 0 {
			s.closeAll()
			return nil
		}
		select {
		case <-ctx.Done():
			s.closeAll()
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// closeAll closes every connection still open, and their upstream ones.
func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.abort()
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// startWatchLoop starts the watch loop unless it runs.
func (s *Server) startWatchLoop() {
	if s.watching.CompareAndSwap(false, true) {
		go s.watchLoop()
	}
}

// watchLoop starts, every watchAfter/2, the watch of the requests without
// a body that have waited watchAfter for their answer (see clientSide): one
// ticker for the server instead of a timer per request. It ends when no
// request waits; the next one starts it again.
func (s *Server) watchLoop() {
	tick := time.NewTicker(watchAfter / 2)
	defer tick.Stop()
	for now := range tick.C {
		if s.watchWaiting(now) {
			continue
		}
		s.watching.Store(false)
		// A request that began waiting as the loop decided to end may
		// have seen it still running: look once more.
		if !s.watchWaiting(now) || !s.watching.CompareAndSwap(false, true) {
			return
		}
	}
}

// watchWaiting starts the watches that are due and reports whether any
// request still waits for its watch.
func (s *Server) watchWaiting(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	waiting := false
	for c := range s.conns {
		c.watchLate(now)
		waiting = waiting || c.waiting.Load() != nil
	}
	return waiting
}

func (s *Server) headerTimeout() time.Duration {
	if s.HeaderTimeout > 0 {
		return s.HeaderTimeout
	}
	return DefaultHeaderTimeout
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return DefaultIdleTimeout
}

// Response is what Observe is told of a response.
type Response struct {
	Code int
	// Start is when the request was read (time.Now, monotonic reading
	// included); Took the time from then to the response header.
	Start time.Time
	Took  time.Duration
	// Local is set when Unavailable answered, not the upstream.
	Local bool
}

func (s *Server) observe(code int, start time.Time, local bool) {
	if s.Observe != nil {
		s.Observe(Response{Code: code, Start: start, Took: time.Since(start), Local: local})
	}
}
