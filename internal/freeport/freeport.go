// Package freeport picks TCP ports for tests that start a server which binds a port it is given
// (a child process, the Envoy double's listeners), rather than one the kernel chooses.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Ports returns n distinct TCP ports free on host now. It holds each port until all are picked
// (so none repeats) and picks them below the kernel's ephemeral range when it can: a port from
// that range could be handed to another process's outgoing connection or listen(":0") (a test's
// upstream, another package's server) between this pick and the server's bind; a port below it
// is taken only by an explicit bind.
func Ports(host string, n int) ([]int, error) {
	low, high := 20000, ephemeralLow()
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for attempts := 0; len(ports) < n && attempts < 50*n && high-low > 2*n; attempts++ {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(low+rand.IntN(high-low))))
		if err != nil {
			continue // in use
		}
		held = append(held, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for len(ports) < n { // no room below the ephemeral range: let the kernel choose
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("free port on %s: %w", host, err)
		}
		held = append(held, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Addr returns HOST:PORT with a port free on host now (see Ports).
func Addr(host string) (string, error) {
	p, err := Ports(host, 1)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(p[0])), nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (the ports it hands out for
// outgoing connections and listen(":0")), or 32768 when it cannot be read.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return 32768
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 32768
	}
	return low
}
