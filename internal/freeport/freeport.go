// Package freeport picks TCP ports for tests that start a server which binds a port it is given
// (a child process, the Envoy double's listeners), rather than one the kernel chooses.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Ports returns n distinct TCP ports free on host now. It holds each port until all are picked
// (so none repeats) and picks them below the kernel's ephemeral range when it can: a port from
// that range could be handed to another process's outgoing connection or listen(":0") (a test's
// upstream, another package's server) between this pick and the server's bind; a port below it
// is taken only by an explicit bind. Each port it returns is claimed for the rest of the process
// (claim), so that another test process (go test runs packages at once) does not pick it too
// before this one's server binds it.
func Ports(host string, n int) ([]int, error) {
	p := picker{host: host}
	defer p.close()
	low, high := 20000, ephemeralLow()
	for attempts := 0; len(p.ports) < n && attempts < 50*n && high-low > 2*n; attempts++ {
		port := low + rand.IntN(high-low)
		if claim(port) {
			_ = p.take(port) // in use: try another
		}
	}
	// No room below the ephemeral range: let the kernel choose.
	return p.kernel(n)
}

// KernelPorts returns n distinct TCP ports the kernel picks on host (its ephemeral range), each
// held until all are picked. For an address only the caller's servers bind (no listen(":0") on
// it could take the port first), where the ports below the ephemeral range are better left to
// Ports' callers, whose servers may bind every address.
func KernelPorts(host string, n int) ([]int, error) {
	p := picker{host: host}
	defer p.close()
	return p.kernel(n)
}

// picker holds the ports it took on host until close.
type picker struct {
	host  string
	held  []net.Listener
	ports []int
}

// take listens on port (0: one the kernel picks) and keeps it.
func (p *picker) take(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(p.host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	p.held = append(p.held, l)
	p.ports = append(p.ports, l.Addr().(*net.TCPAddr).Port)
	return nil
}

// kernel takes ports the kernel picks until it holds n, and returns them.
func (p *picker) kernel(n int) ([]int, error) {
	for len(p.ports) < n {
		if err := p.take(0); err != nil {
			return nil, fmt.Errorf("free port on %s: %w", p.host, err)
		}
	}
	return p.ports, nil
}

func (p *picker) close() {
	for _, l := range p.held {
		l.Close()
	}
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

// claim reports whether this process could claim port for the rest of its life: an exclusive
// flock on a file named after the port in a folder every test process shares, kept by a file
// descriptor that is never closed (the kernel drops the lock when the process ends, however it
// ends). A port another process claimed, or this one did before, is refused. Without the folder
// (not writable) every port can be claimed.
func claim(port int) bool {
	dir := filepath.Join(os.TempDir(), "mcpgate-freeport")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return true
	}
	fd, err := syscall.Open(filepath.Join(dir, strconv.Itoa(port)), syscall.O_CREAT|syscall.O_RDWR|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return true
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		syscall.Close(fd)
		return false
	}
	return true // fd stays open: a raw descriptor, no finalizer closes it
}
