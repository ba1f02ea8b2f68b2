// Package testkit holds helpers shared by the agent's tests: sample Node.js
// apps written on the fly, free ports and waiting for HTTP answers.
package testkit

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// HelloApp answers every request with "hello from <SLOT_NAME> <VERSION>" on
// PORT (logging "listening on <PORT>"), /health with 200, /pid with its PID, /stream with two chunks 300 ms apart, and echoes
// the bytes of an HTTP upgrade back to the client.
const HelloApp = `
const http = require('http');
const server = http.createServer((req, res) => {
  if (req.url === '/health') { res.end('ok'); return; }
  if (req.url === '/stream') {
    res.writeHead(200, {'Content-Type': 'text/plain'});
    res.write('first\n');
    setTimeout(() => res.end('second\n'), 300);
    return;
  }
  if (req.url === '/pid') { res.end(String(process.pid)); return; }
  res.end('hello from ' + (process.env.SLOT_NAME || '?') + ' ' + (process.env.VERSION || 'v1'));
});
server.on('upgrade', (req, socket) => {
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: ' + req.headers['upgrade'] + '\r\nConnection: Upgrade\r\n\r\n');
  socket.on('data', (d) => socket.write(d));
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening on ' + process.env.PORT));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`

// NeedNode skips the test when Node.js is not installed.
func NeedNode(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
}

// WriteApp writes src as server.js into a new directory and returns it.
func WriteApp(t testing.TB, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := WriteAppIn(dir, src); err != nil {
		t.Fatal(err)
	}
	return dir
}

// WriteAppIn writes src as server.js into the existing directory dir.
func WriteAppIn(dir, src string) error {
	if err := os.WriteFile(filepath.Join(dir, "server.js"), []byte(src), 0o644); err != nil {
		return fmt.Errorf("write app: %w", err)
	}
	return nil
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := FreePortErr()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// FreePortErr returns a loopback port that was free a moment ago and that
// no earlier call in this process returned: the kernel may offer a port
// again once its listener is closed, and two settings of one agent must
// not get the same one.
func FreePortErr() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if !handedOut[port] {
			handedOut[port] = true
			return port, nil
		}
	}
	return 0, errors.New("find a free port: the kernel offered only ports handed out before")
}

var (
	portsMu   sync.Mutex
	handedOut = map[int]bool{} // ports FreePortErr returned
)

// WaitHTTP polls url until it answers with status want, or fails the test
// after timeout. It returns the time it took.
func WaitHTTP(t testing.TB, url string, want int, timeout time.Duration) time.Duration {
	t.Helper()
	d, err := WaitHTTPErr(url, want, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// WaitHTTPErr polls url every 10 ms until it answers with status want and
// returns the time it took, or an error naming the last answer after timeout.
func WaitHTTPErr(url string, want int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	client := &http.Client{Timeout: time.Second}
	var last string
	for time.Since(start) < timeout {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return time.Since(start), nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s did not answer %d within %s (last: %s)", url, want, timeout, last)
}

// PortFree reports whether nothing listens on the loopback port.
func PortFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// DBHealthApp answers /health with "ok" once `$PSQL` runs `SELECT 1` through
// DATABASE_URL (503 with psql's error before), and anything else with "db app".
const DBHealthApp = `
const http = require('http');
const { execFile } = require('child_process');
http.createServer((req, res) => {
  if (req.url !== '/health') { res.end('db app'); return; }
  execFile(process.env.PSQL, ['-X', '-A', '-t', '-c', 'SELECT 1', '-d', process.env.DATABASE_URL], { env: { PATH: process.env.PATH } }, (err, out) => {
    if (err || out.trim() !== '1') { res.statusCode = 503; res.end(String(err || out)); return; }
    res.end('ok');
  });
}).listen(Number(process.env.PORT), '127.0.0.1');
`

// NeedPostgres skips the test when no PostgreSQL server is installed: no
// postgres on PATH and none in Debian's /usr/lib/postgresql/<major>/bin. It
// looks for the files itself, so that a test of the agent's own search does
// not skip when that search is what fails.
func NeedPostgres(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("postgres"); err == nil {
		return
	}
	if found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres"); len(found) > 0 {
		return
	}
	t.Skip("PostgreSQL is not installed")
}

// PIDAlive reports whether process pid runs (exists and is no zombie).
func PIDAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	st := string(b)
	return !strings.HasPrefix(st[strings.LastIndexByte(st, ')')+2:], "Z")
}
