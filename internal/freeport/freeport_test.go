package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPorts: the ports are distinct, below the ephemeral range, and free: each can be bound.
func TestPorts(t *testing.T) {
	ports, err := Ports("127.0.0.1", 20)
	if err != nil {
		t.Fatal(err)
	}
	low := ephemeralLow()
	checkFree(t, ports, func(p int) bool { return p >= 20000 && p < low })
	a, err := Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, p, _ := net.SplitHostPort(a); p == "" {
		t.Errorf("Addr %q", a)
	}
}

// TestKernelPorts: distinct ports from the kernel's ephemeral range, free once returned.
func TestKernelPorts(t *testing.T) {
	ports, err := KernelPorts("127.0.0.1", 10)
	if err != nil {
		t.Fatal(err)
	}
	low := ephemeralLow()
	checkFree(t, ports, func(p int) bool { return p >= low })
}

// checkFree fails unless the ports are distinct, each inRange and free to bind.
func checkFree(t *testing.T, ports []int, inRange func(int) bool) {
	t.Helper()
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] || !inRange(p) {
			t.Errorf("port %d: repeated, or outside the range", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("port %d not free: %v", p, err)
			continue
		}
		l.Close()
	}
}
