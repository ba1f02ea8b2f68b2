// Package testkit holds helpers shared by the agent's tests: sample Node.js
// apps written on the fly, free ports and waiting for HTTP answers.
package testkit

import (
	"fmt"
	"math/rand/v2"
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

// WriteTree writes each name → content (names may hold folders) under a
// fresh temporary folder and returns that folder.
func WriteTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// FreePort returns a free loopback port for a test's server; see
// FreePortErr.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := FreePortErr()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// FreePortErr returns a loopback port that is free and reserved for this
// process, for a server that starts later (a child process, which cannot
// be handed a listener). A port the kernel picks for ":0" would be one of
// its ephemeral ports, which any connect or ":0" listener on the machine
// may take before the server binds it; so the port comes from below the
// ephemeral range (and below Kubernetes' node ports), and is reserved
// against every other caller, in this process or another, by an abstract
// unix socket named after it that lives as long as this process.
func FreePortErr() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	from, to, err := testPortBand()
	if err != nil {
		return 0, err
	}
	for range 1000 {
		port := from + rand.IntN(to-from)
		if reserved[port] != nil {
			continue
		}
		ln, err := net.Listen("unix", reservation(port))
		if err != nil {
			continue // another test process holds it
		}
		if !PortFree(port) {
			_ = ln.Close()
			continue
		}
		reserved[port] = ln
		return port, nil
	}
	return 0, fmt.Errorf("find a free port: none free and unreserved among 1000 tries in %d-%d", from, to-1)
}

// reservation is the abstract unix socket that reserves port.
func reservation(port int) string { return "@coder-slots-test-port-" + strconv.Itoa(port) }

// testPortBand is where FreePortErr picks ports, [from, to): 20000 up to
// 30000 (where Kubernetes' node ports begin) or the kernel's ephemeral
// range, whichever is lower.
func testPortBand() (from, to int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, fmt.Errorf("find a free port: %w", err)
	}
	lo, err := strconv.Atoi(strings.Fields(string(b) + " ?")[0])
	if err != nil {
		return 0, 0, fmt.Errorf("find a free port: ip_local_port_range %q: %w", b, err)
	}
	from, to = 20000, min(30000, lo)
	if to-from < 1000 {
		return 0, 0, fmt.Errorf("find a free port: the ephemeral ports begin at %d, leaving no band for test ports above %d", lo, from)
	}
	return from, to, nil
}

var (
	portsMu  sync.Mutex
	reserved = map[int]net.Listener{} // ports FreePortErr returned, with their reservations
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
