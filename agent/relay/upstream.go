package relay

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// upstreamConn is a connection to an upstream, pinned to one client
// connection.
type upstreamConn struct {
	to        *Upstream
	nc        net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	used      bool // has carried a request: it may have gone stale since
}

// dialTimeout bounds connecting to an upstream on loopback.
const dialTimeout = 2 * time.Second

// staleAfter is how long an upstream connection may sit idle before it is
// checked for a close by the app (Node.js closes idle ones after 5 s).
const staleAfter = time.Second

// upstreamFor returns the pinned connection to up, dialling a new one when
// there is none, when it leads to another upstream, or when the app closed
// it while it was idle.
func (c *conn) upstreamFor(up *Upstream) (*upstreamConn, error) {
	if u := c.up; u != nil {
		if u.to == up && (time.Since(u.idleSince) < staleAfter || usable(u)) {
			return u, nil
		}
		c.dropUpstream()
	}
	nc, err := net.DialTimeout("tcp", up.addr, dialTimeout)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", up.addr, err)
	}
	c.up = &upstreamConn{to: up, nc: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc)}
	return c.up, nil
}

// dropUpstream closes the pinned upstream connection, if any.
func (c *conn) dropUpstream() {
	if c.up != nil {
		_ = c.up.nc.Close()
		c.up = nil
	}
}

// usable reports whether an idle upstream connection is still open and has
// sent nothing unasked: one non-blocking peek at the socket.
func usable(u *upstreamConn) bool {
	if u.br.Buffered() > 0 {
		return false
	}
	sc, ok := u.nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, perr := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		open = errors.Is(perr, unix.EAGAIN)
		return true
	})
	return err == nil && open
}

// replayable reports whether a request may be sent again on a fresh
// connection after its first try on a reused one failed before any byte of
// a response came back: it has no body and is idempotent, as net/http's
// Transport decides.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}
