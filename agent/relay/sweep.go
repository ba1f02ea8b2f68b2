package relay

import "time"

// sweepEvery is how often the sweep loop looks at the idle connections:
// a quarter of the shortest timeout, at most maxSweepEvery.
func (s *Server) sweepEvery() time.Duration {
	return max(min(s.headerTimeout()/4, s.idleTimeout()/4, maxSweepEvery), time.Millisecond)
}

// maxSweepEvery bounds the sweep's period: an upstream connection the app
// closed under an idle client is closed within it.
const maxSweepEvery = 500 * time.Millisecond

// sweepLoop looks, every sweepEvery, at the connections waiting for a
// request: it ends the wait of those past their deadline (HeaderTimeout
// from the accept for the first request, IdleTimeout after a response for
// the next) and closes the pinned upstream connections their apps have
// closed meanwhile (a dead socket would otherwise stay in CLOSE-WAIT for
// as long as the client stays). One ticker for the server instead of a
// deadline per request; it ends with the last connection, and track starts
// it again.
func (s *Server) sweepLoop() {
	tick := time.NewTicker(s.sweepEvery())
	defer tick.Stop()
	var idle []*conn
	for now := range tick.C {
		idle = idle[:0]
		s.mu.Lock()
		if len(s.conns) == 0 {
			s.sweeping = false
			s.mu.Unlock()
			return
		}
		for c := range s.conns {
			if c.state.Load() == stateIdle {
				idle = append(idle, c)
			}
		}
		s.mu.Unlock()
		for _, c := range idle {
			c.sweep(now)
		}
		clear(idle) // no connection kept alive by the slice
	}
}

// sweep ends the wait of an idle connection past its deadline, or drops
// its pinned upstream connection when the app closed it (or sent something
// unasked). The connection's goroutine leaves the idle state under idleMu,
// so nothing else uses the upstream connection meanwhile.
func (c *conn) sweep(now time.Time) {
	c.idleMu.Lock()
	defer c.idleMu.Unlock()
	if c.state.Load() != stateIdle {
		return
	}
	if now.UnixNano() >= c.idleUntil {
		c.interruptLocked()
		return
	}
	if u := c.pinned.Load(); u != nil && !usable(u) {
		c.dropUpstream()
	}
}
