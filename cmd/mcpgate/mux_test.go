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

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	"github.com/mcpgate/mcpgate/internal/extprocrun"
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
	if c := f.config(); c.MuxListen != "unix:///run/mux.sock" || c.MuxUpstream != "unix:///run/up.sock" {
		t.Errorf("--mux-listen, --mux-upstream: %q, %q", c.MuxListen, c.MuxUpstream)
	}
}

// TestServeExtProcMux: `mcpgate extproc --mux-listen` serves the mux until its context ends, and
// its ext_proc sets on a multiplexed route's requests the secret its mux requires.
func TestServeExtProcMux(t *testing.T) {
	dir := t.TempDir()
	muxSock := filepath.Join(dir, "mux.sock")
	epSock := filepath.Join(dir, "ep.sock")
	f, err := parseExtProcFlags([]string{"--listen", "unix://" + epSock, "--xds-addr", "127.0.0.1:1",
		"--admin-addr", "", "--audit-log", "none", "--mux-listen", "unix://" + muxSock, "--mux-upstream", "unix://" + filepath.Join(dir, "up.sock")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- extprocrun.Serve(ctx, f.config(), slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	}()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", muxSock)
	}}}
	// The socket exists once extprocrun.Serve listens: a request before that fails to dial.
	post := func(secret string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, "http://mux/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		if secret != "" {
			req.Header.Set(contract.HeaderMuxAuth, secret)
		}
		return client.Do(req)
	}
	var resp *http.Response
	for {
		if resp, err = post(""); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("extprocrun.Serve ended: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	resp.Body.Close()
	// Without the front hop's secret the mux refuses.
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST without %s: %d, want 403", contract.HeaderMuxAuth, resp.StatusCode)
	}

	// The secret ext_proc sets on a multiplexed route (no policy: none needed).
	conn, err := grpc.NewClient("unix://"+epSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s, err := extproctest.Open(ctx, extprocv3.NewExternalProcessorClient(conn),
		extproctest.Route{Route: "ns/r/rule/0", MCP: "streamable-http", Backend: "ns/be", Targets: "a,b"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hr, err := s.RequestHeaders([]extproctest.Header{{Name: ":method", Value: "POST"}, {Name: ":path", Value: "/mcp"},
		{Name: contract.HeaderMuxAuth, Value: "forged"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	var secret string
	for _, o := range extproctest.Common(hr).GetHeaderMutation().GetSetHeaders() {
		if o.GetHeader().GetKey() == contract.HeaderMuxAuth {
			secret = string(o.GetHeader().GetRawValue())
		}
	}
	if len(secret) < 32 || secret == "forged" {
		t.Fatalf("ext_proc set %s to %q: want the process's secret", contract.HeaderMuxAuth, secret)
	}
	if resp, err = post(secret); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// With it, the mux reads the request: without the route's x-mcpgate-mux it refuses that.
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST with the secret, without x-mcpgate-mux: %d, want 400", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("extprocrun.Serve: %v", err)
	}
}
