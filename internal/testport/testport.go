// Package testport hands out free TCP ports on 127.0.0.1 for the servers
// the tests start (Kafka brokers, PostgreSQL), outside the kernel's
// ephemeral port range.
//
// A port taken by binding 127.0.0.1:0 lies in the ephemeral range, the
// range the kernel also picks the local port of every outgoing connection
// from. While a test has such a server stopped (a broker outage, a
// database restart), any client connecting anywhere, or a client retrying
// that very server (a TCP self-connect), can be handed the server's port,
// and the server then cannot bind it again when the test restarts it.
// Ports below (or above) the ephemeral range are never handed out that way.
package testport

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

const (
	// lowest is the lowest port handed out: clear of the well-known and
	// most registered services' ports.
	lowest = 20000
	// minRange is the fewest candidate ports worth drawing from; below it
	// Free falls back to ports the kernel picks.
	minRange = 1000
	// tries bounds the random draws for each port.
	tries = 200
)

// Free reserves n distinct free TCP ports on 127.0.0.1 outside the
// ephemeral port range (each one was bound, then released, so a server
// can bind it next). Where the range leaves too few ports outside it,
// they come from the kernel (127.0.0.1:0), as before.
func Free(n int) ([]int, error) {
	lo, hi := ephemeralRange()
	var spans [][2]int // candidate [from, to]
	if lo-1-lowest+1 >= minRange {
		spans = append(spans, [2]int{lowest, lo - 1})
	}
	if from := max(hi+1, lowest); 65535-from+1 >= minRange {
		spans = append(spans, [2]int{from, 65535})
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := listen(spans)
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// listen binds a random free port of spans, or one the kernel picks when
// spans is empty or every draw was taken.
func listen(spans [][2]int) (net.Listener, error) {
	total := 0
	for _, s := range spans {
		total += s[1] - s[0] + 1
	}
	if total > 0 {
		for range tries {
			var b [8]byte
			if _, err := rand.Read(b[:]); err != nil {
				return nil, fmt.Errorf("testport: random: %w", err)
			}
			i := int(binary.LittleEndian.Uint64(b[:]) % uint64(total))
			port := 0
			for _, s := range spans {
				if w := s[1] - s[0] + 1; i < w {
					port = s[0] + i
					break
				} else {
					i -= w
				}
			}
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
				return l, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testport: free port: %w", err)
	}
	return l, nil
}

// ephemeralRange is the kernel's ephemeral port range
// (/proc/sys/net/ipv4/ip_local_port_range), or the whole unprivileged
// range where it cannot be read (then Free leaves the choice to the kernel).
func ephemeralRange() (lo, hi int) {
	f, err := os.Open("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 1024, 65535
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 1024, 65535
	}
	fs := strings.Fields(sc.Text())
	if len(fs) != 2 {
		return 1024, 65535
	}
	a, err1 := strconv.Atoi(fs[0])
	b, err2 := strconv.Atoi(fs[1])
	if err1 != nil || err2 != nil || a > b {
		return 1024, 65535
	}
	return a, b
}
