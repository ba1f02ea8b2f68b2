package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"time"
)

// ServeSplice is the reference proxy of the proxy rows: it listens on a
// free loopback port, writes the address as its first line to out, and
// joins every connection to a new one to target with io.Copy both ways
// (splice(2) on Linux), knowing nothing of HTTP. It returns when it can no
// longer accept.
func ServeSplice(target string, out io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	if _, err := fmt.Fprintln(out, ln.Addr()); err != nil {
		return fmt.Errorf("write the address: %w", err)
	}
	for {
		client, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		go splice(client, target)
	}
}

// splice joins client to a new connection to target until either side ends.
func splice(client net.Conn, target string) {
	defer client.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() {
		_, _ = io.Copy(up, client)
		_ = up.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(client, up)
}

// spliceProxy starts the reference proxy to target in its own process (so
// that, like the slot, it is a separate program between the client and the
// app) and returns its address and a function that stops it.
func spliceProxy(ctx context.Context, argv []string, target string) (string, func(), error) {
	if len(argv) == 0 {
		return "", nil, errors.New("no command for the reference proxy")
	}
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], target)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, fmt.Errorf("reference proxy: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start the reference proxy: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	select {
	case addr := <-lines:
		if _, _, err := net.SplitHostPort(addr); err != nil {
			stop()
			return "", nil, fmt.Errorf("the reference proxy said %q instead of its address", addr)
		}
		return addr, stop, nil
	case <-time.After(10 * time.Second):
		stop()
		return "", nil, errors.New("the reference proxy did not start within 10s")
	}
}
