package testkit

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestFreePortIsReservedOutsideTheEphemeralRange: the ports handed out are
// none the kernel gives to a connect or a ":0" listener, are free, differ,
// and no other caller (in any process) can reserve them.
func TestFreePortIsReservedOutsideTheEphemeralRange(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	lo, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for range 20 {
		port := FreePort(t)
		if port >= lo || port < 1024 {
			t.Fatalf("port %d: in the ephemeral range (from %d) or privileged", port, lo)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
		if !PortFree(port) {
			t.Fatalf("port %d is not free", port)
		}
		if ln, err := net.Listen("unix", reservation(port)); err == nil {
			ln.Close()
			t.Fatalf("port %d: its reservation could be taken again", port)
		}
	}
}
