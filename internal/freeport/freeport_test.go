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
	// Addr's host is the one asked for (the whole 127/8 is the loopback).
	a, err := Addr("127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if h, p, _ := net.SplitHostPort(a); h != "127.0.0.2" || p == "" {
		t.Errorf("Addr(127.0.0.2) = %q", a)
	} else if l, err := net.Listen("tcp", a); err != nil {
		t.Errorf("Addr %s not free: %v", a, err)
	} else {
		l.Close()
	}
}

// TestPortsClaimed: every port Ports returns is claimed for the process, so another claim of it
// (another test process's, or this one's again) is refused.
func TestPortsClaimed(t *testing.T) {
	ports, err := Ports("127.0.0.1", 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if claim(p) {
			t.Errorf("port %d from Ports could be claimed again", p)
		}
	}
}

// TestPickerHolds: a port the picker took stays taken until close (so that no pick repeats
// it), then is free.
func TestPickerHolds(t *testing.T) {
	p := picker{host: "127.0.0.1"}
	if err := p.take(0); err != nil {
		t.Fatal(err)
	}
	if err := p.take(p.ports[0]); err == nil {
		t.Errorf("port %d taken twice: the picker does not hold what it took", p.ports[0])
	}
	p.close()
	checkFree(t, p.ports[:1], func(int) bool { return true })
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
