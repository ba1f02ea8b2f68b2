package relay

import (
	"bufio"
	"io"
	"net"
	"time"
)

// tunnelLinger is how long a tunnel whose one direction has ended waits
// for the other to end too before it closes both connections.
const tunnelLinger = 5 * time.Second

// tunnel copies bytes between the client connection and the upstream one,
// each side's buffered bytes first. When one side stops sending, the other
// is told so (a half-close) and has tunnelLinger to finish.
func tunnel(client net.Conn, clientBuf *bufio.Reader, upstream net.Conn, upstreamBuf *bufio.Reader) {
	ended := make(chan struct{}, 2)
	go func() {
		pipe(upstream, clientBuf, client)
		ended <- struct{}{}
	}()
	go func() {
		pipe(client, upstreamBuf, upstream)
		ended <- struct{}{}
	}()
	<-ended
	select {
	case <-ended:
	case <-time.After(tunnelLinger):
		_ = client.Close()
		_ = upstream.Close()
		<-ended
	}
}

// pipe copies what buf holds from src, then src itself, to dst, and then
// closes dst for writing.
func pipe(dst net.Conn, buf *bufio.Reader, src net.Conn) {
	if n := buf.Buffered(); n > 0 {
		b, _ := buf.Peek(n)
		_, _ = dst.Write(b)
		_, _ = buf.Discard(n)
	}
	_, _ = io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
}
