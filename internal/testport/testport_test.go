package testport

import (
	"net"
	"strconv"
	"testing"
)

// TestFreeOutsideEphemeralRange: the ports are distinct, bindable, and
// outside the kernel's ephemeral range where it leaves room for them.
func TestFreeOutsideEphemeralRange(t *testing.T) {
	lo, hi := ephemeralRange()
	ports, err := Free(8)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d handed out twice: %v", p, ports)
		}
		seen[p] = true
		if lo-lowest >= minRange && p >= lo && p <= hi {
			t.Errorf("port %d is in the ephemeral range %d-%d", p, lo, hi)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free after Free: %v", p, err)
		}
		l.Close()
	}
}

// TestListenFallsBack: with no span to draw from, the kernel picks.
func TestListenFallsBack(t *testing.T) {
	l, err := listen(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Addr().(*net.TCPAddr).Port == 0 {
		t.Fatal("no port")
	}
}
