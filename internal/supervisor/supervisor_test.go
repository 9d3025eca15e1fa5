package supervisor

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/internal/freeport"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// runDefaults is the Config `mcpgate run` gives its supervisor without flags, with the Envoy bin.
func runDefaults(t *testing.T, bin string) Config {
	t.Helper()
	admin, err := net.ResolveTCPAddr("tcp", bootstrap.DefaultAdminAddr)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Bin: bin, XDSAddr: bootstrap.DefaultXDSAddr, ExtProcAddr: bootstrap.DefaultExtProcAddr, MuxAddr: bootstrap.DefaultMuxAddr, AdminAddr: admin}
}

// TestSupervisorStartsNothingAfterStop: a translation that finishes while mcpgate stops must
// not start an Envoy that nothing would stop.
func TestSupervisorStartsNothingAfterStop(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "envoy")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := New(runDefaults(t, bin), slog.New(slog.DiscardHandler), io.Discard, io.Discard)
	s.StopAll()
	s.Sync([]string{"ns/gw"})
	s.mu.Lock()
	n := len(s.runs)
	s.mu.Unlock()
	s.StopAll()
	if n != 0 {
		t.Errorf("an Envoy was started after StopAll")
	}
}

// TestSupervisorAdminPorts gives each Gateway's Envoy its own admin port, skipping one in use,
// and keeps it when the Gateway comes back.
func TestSupervisorAdminPorts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	base := busy.Addr().(*net.TCPAddr).Port
	cfg := runDefaults(t, "envoy")
	cfg.AdminAddr = busy.Addr().(*net.TCPAddr)
	s := New(cfg, slog.New(slog.DiscardHandler), io.Discard, io.Discard)
	defer s.StopAll()
	var got []uint32
	for _, gw := range []string{"ns/a", "ns/b", "ns/a"} {
		b := supervisedBootstrap(t, s, gw)
		got = append(got, b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue())
	}
	if got[0] <= uint32(base) || got[1] <= got[0] || got[2] != got[0] {
		t.Errorf("admin ports %v from busy port %d: want the ports after it, in order, the first one again for ns/a", got, base)
	}
}

// supervisedBootstrap writes the bootstrap the supervisor gives Gateway gw's Envoy and parses it.
func supervisedBootstrap(t *testing.T, s *Supervisor, gw string) *bootstrapv3.Bootstrap {
	t.Helper()
	path, err := s.writeBootstrap(gw)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bootstrap.Parse(y)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSupervisorMuxAddresses: each Gateway's bootstrap sends the mux cluster to the run's
// --mux-addr, and binds its mux upstream listener on its own socket in the run's socket folder
// (bootstrap.MuxUpstreamAddr, where the run's mux looks for it).
func TestSupervisorMuxAddresses(t *testing.T) {
	dir := t.TempDir()
	cfg := runDefaults(t, "envoy")
	cfg.MuxAddr, cfg.SocketDir = "127.0.0.1:28002", dir
	s := New(cfg, slog.New(slog.DiscardHandler), io.Discard, io.Discard)
	defer s.StopAll()
	sockets := map[string]bool{}
	for _, gw := range []string{"ns/a", "ns/b"} {
		b := supervisedBootstrap(t, s, gw)
		for _, c := range b.GetStaticResources().GetClusters() {
			if sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress(); c.GetName() == contract.MuxCluster &&
				(sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 28002) {
				t.Errorf("%s: cluster %s at %v, want --mux-addr 127.0.0.1:28002", gw, c.GetName(), sa)
			}
		}
		ls := b.GetStaticResources().GetListeners()
		if len(ls) != 1 || "unix://"+ls[0].GetAddress().GetPipe().GetPath() != bootstrap.MuxUpstreamAddr(dir, gw) || filepath.Dir(ls[0].GetAddress().GetPipe().GetPath()) != dir {
			t.Errorf("%s: listeners %v, want %s on %s", gw, ls, contract.MuxUpstreamListener, bootstrap.MuxUpstreamAddr(dir, gw))
		}
		sockets[bootstrap.MuxUpstreamAddr(dir, gw)] = true
	}
	if len(sockets) != 2 {
		t.Errorf("the Gateways share a socket: %v", sockets)
	}
}

// TestEnvoyArgs sets the access log flush interval once: Envoy refuses a flag given twice.
func TestEnvoyArgs(t *testing.T) {
	for _, c := range []struct {
		extra []string
		want  string
	}{
		{nil, "-c b.yaml --log-level info --disable-hot-restart --file-flush-interval-msec 1000"},
		{[]string{"--concurrency", "2"}, "-c b.yaml --log-level info --disable-hot-restart --file-flush-interval-msec 1000 --concurrency 2"},
		{[]string{"--file-flush-interval-msec", "100"}, "-c b.yaml --log-level info --disable-hot-restart --file-flush-interval-msec 100"},
	} {
		if got := strings.Join(envoyArgs("b.yaml", c.extra), " "); got != c.want {
			t.Errorf("envoyArgs(%q) = %q, want %q", c.extra, got, c.want)
		}
	}
}

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	w := &prefixWriter{w: &out, prefix: "envoy ns/gw: "}
	for _, s := range []string{"first li", "ne\nsecond line\nthi", "rd\n"} {
		if _, err := io.WriteString(w, s); err != nil {
			t.Fatal(err)
		}
	}
	if want := "envoy ns/gw: first line\nenvoy ns/gw: second line\nenvoy ns/gw: third\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

// TestBootstrapDir: a new bootstrap folder removes those of processes that are gone (a run
// killed with SIGKILL) and keeps those of running ones.
func TestBootstrapDir(t *testing.T) {
	base := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(base, strconv.Itoa(dead.Process.Pid)+"-123")
	alive := filepath.Join(base, strconv.Itoa(os.Getppid())+"-456")
	other := filepath.Join(base, "notes")
	for _, d := range []string{gone, alive, other} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(gone, "ns_gw.yaml"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, err := bootstrapDir(base)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(dir) != base || !strings.HasPrefix(filepath.Base(dir), strconv.Itoa(os.Getpid())+"-") {
		t.Errorf("bootstrapDir = %s, want %s/%d-*", dir, base, os.Getpid())
	}
	for d, want := range map[string]bool{gone: false, alive: true, other: true, dir: true} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", d, err == nil, want)
		}
	}
	// Two folders of this process do not collide.
	second, err := bootstrapDir(base)
	if err != nil || second == dir {
		t.Errorf("second folder %s (%v), first %s", second, err, dir)
	}
	// No cache folder: a temporary one.
	tmp, err := bootstrapDir("")
	if err != nil || !strings.HasPrefix(filepath.Base(tmp), "mcpgate-envoy-") {
		t.Errorf("bootstrapDir(\"\") = %s, %v", tmp, err)
	}
	os.RemoveAll(tmp)
}

// TestSupervisorFolder: the supervisor writes its bootstraps in the user's cache folder and
// removes them when it stops.
func TestSupervisorFolder(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	cfg := runDefaults(t, "envoy")
	addr, err := freeport.Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminAddr, err = net.ResolveTCPAddr("tcp", addr); err != nil {
		t.Fatal(err)
	}
	s := New(cfg, slog.New(slog.DiscardHandler), io.Discard, io.Discard)
	path, err := s.writeBootstrap("ns/gw")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "mcpgate", "envoy"); !strings.HasPrefix(path, want+string(filepath.Separator)) {
		t.Errorf("bootstrap %s, want it under %s", path, want)
	}
	s.StopAll()
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Errorf("the bootstrap folder is left after StopAll: %v", err)
	}
}
