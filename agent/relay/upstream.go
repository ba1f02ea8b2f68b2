package relay

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// upstreamConn is a connection to an upstream, pinned to one client
// connection.
type upstreamConn struct {
	to    *Upstream
	nc    net.Conn
	limit *limitedReader // bounds a response's header
	br    *bufio.Reader
	bw    *bufio.Writer
	used  bool // has carried a request: the app may have closed it since
}

// dialTimeout bounds connecting to an upstream on loopback.
const dialTimeout = 2 * time.Second

// maxResponseHeaderBytes bounds a response's header, as net/http's
// Transport does.
const maxResponseHeaderBytes = 10 << 20

// upstreamFor returns the pinned connection to up, dialling a new one when
// there is none, when it leads to another upstream, or when the app closed
// it (or sent something unasked) since its last response.
func (c *conn) upstreamFor(up *Upstream) (*upstreamConn, error) {
	if u := c.pinned.Load(); u != nil {
		if u.to == up && usable(u) {
			return u, nil
		}
		c.dropUpstream()
	}
	nc, err := net.DialTimeout("tcp", up.addr, dialTimeout)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", up.addr, err)
	}
	limit := &limitedReader{r: nc, n: math.MaxInt64}
	u := &upstreamConn{to: up, nc: nc, limit: limit, br: bufio.NewReader(limit), bw: bufio.NewWriter(nc)}
	c.pinned.Store(u)
	return u, nil
}

// dropUpstream closes the pinned upstream connection, if any.
func (c *conn) dropUpstream() {
	if u := c.pinned.Swap(nil); u != nil {
		_ = u.nc.Close()
	}
}

// usable reports whether an idle upstream connection is still open and has
// sent nothing unasked: one non-blocking peek at the socket. Checking
// before every reuse costs one system call and spares a request sent into
// a connection the app has closed, which could not be replayed unless it
// is idempotent.
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
