package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMuxFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--mux-listen", "unix://relative.sock"},
		{"--mux-listen", "nohostport"},
		{"--mux-upstream", "unix://"},
		{"--mux-upstream", "/a/path"},
	} {
		if _, err := parseExtProcFlags(args); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%q: want an error naming %s, got %v", args, args[0], err)
		}
	}
	f, err := parseExtProcFlags([]string{"--mux-listen", "unix:///run/mux.sock", "--mux-upstream", "unix:///run/up.sock"})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.mux.upstreamOf()("ns/gw"); got != "unix:///run/up.sock" {
		t.Errorf("upstream of ns/gw with --mux-upstream: %q", got)
	}
	f.mux.upstream = ""
	if got := f.mux.upstreamOf()("ns/gw"); !strings.HasPrefix(got, "unix:///") || !strings.HasSuffix(got, ".sock") {
		t.Errorf("upstream of ns/gw by default: %q, want the gateway's socket", got)
	}
}

// TestServeExtProcMux: `mcpgate extproc --mux-listen` serves the mux until its context ends.
func TestServeExtProcMux(t *testing.T) {
	dir := t.TempDir()
	muxSock := filepath.Join(dir, "mux.sock")
	f, err := parseExtProcFlags([]string{"--listen", "unix://" + filepath.Join(dir, "ep.sock"), "--xds-addr", "127.0.0.1:1",
		"--admin-addr", "", "--audit-log", "none", "--mux-listen", "unix://" + muxSock, "--mux-upstream", "unix://" + filepath.Join(dir, "up.sock")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveExtProc(ctx, f, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard) }()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", muxSock)
	}}}
	// The socket exists once serveExtProc listens: a request before that fails to dial.
	var resp *http.Response
	for {
		if resp, err = client.Post("http://mux/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serveExtProc ended: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	resp.Body.Close()
	// Without the route's x-mcpgate-mux the mux refuses.
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST without x-mcpgate-mux: %d, want 400", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serveExtProc: %v", err)
	}
}
