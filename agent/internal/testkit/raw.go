package testkit

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// RawRequest sends req as it is written (no client checks or cleans it)
// to addr on a raw TCP connection and returns the whole answer, read until
// the server closes or 10 s pass.
func RawRequest(t testing.TB, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(c)
	return string(all)
}

// RawGet sends a GET of target, as written, to addr (see RawRequest).
func RawGet(t testing.TB, addr, target string) string {
	t.Helper()
	return RawRequest(t, addr, fmt.Sprintf("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target))
}
