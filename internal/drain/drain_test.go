package drain_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/drain"
	"github.com/mcpgate/mcpgate/internal/freeport"
	"github.com/mcpgate/mcpgate/test/envoydouble/double"
)

// startEnvoy starts the Envoy test double with a listener that proxies every request to up, and
// returns the listener's and the admin's addresses.
func startEnvoy(t *testing.T, up string) (listen, adminAddr string) {
	t.Helper()
	ports, err := freeport.Ports("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	port := ports[0]
	upHost, upPort, _ := net.SplitHostPort(up)
	boot := fmt.Sprintf(`admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: l
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {cluster: up, timeout: 0s}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: up
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
`, port, upHost, upPort)
	file := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(file, []byte(boot), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := double.Start(context.Background(), double.Options{Bootstrap: file, Log: slog.New(slog.DiscardHandler), AccessLog: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return fmt.Sprintf("127.0.0.1:%d", port), d.AdminAddr
}

// TestDrain: /drain refuses a request without the token (403); with it, it drains Envoy once
// and answers when Envoy's downstream connections are gone (a kept-alive connection closes once
// Envoy discourages it) or when the bound comes (an open event stream stays), saying how many
// are left; a second request gets the same answer.
func TestDrain(t *testing.T) {
	const token = "t0ken"
	for _, tc := range []struct {
		name   string
		stream bool
		want   string
	}{{"idle connection", false, "drained: 0 downstream connections left"}, {"open stream", true, "drained: 1 downstream connections left"}} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/stream" {
					w.Header().Set("Content-Type", "text/event-stream")
					w.WriteHeader(200)
					w.(http.Flusher).Flush()
					select {
					case <-release:
					case <-r.Context().Done():
					}
					return
				}
				io.WriteString(w, "ok")
			}))
			defer up.Close()
			defer close(release)
			listen, admin := startEnvoy(t, up.Listener.Addr().String())
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			deadline := time.Now().Add(10 * time.Second)
			for {
				resp, err := client.Get("http://" + listen + "/x")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("the listener does not serve: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if tc.stream {
				resp, err := http.Get("http://" + listen + "/stream")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
			}
			h := httptest.NewServer(drain.Handler(drain.Config{EnvoyAdmin: admin, Token: token,
				Min: 50 * time.Millisecond, Max: 2 * time.Second, Poll: 20 * time.Millisecond}))
			defer h.Close()
			call := func(tok string) (int, string) {
				req, _ := http.NewRequest(http.MethodGet, h.URL+drain.Path, nil)
				if tok != "" {
					req.Header.Set(drain.TokenHeader, tok)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, strings.TrimSpace(string(b))
			}
			for _, bad := range []string{"", "wrong"} {
				if code, _ := call(bad); code != http.StatusForbidden {
					t.Errorf("token %q: %d, want 403", bad, code)
				}
			}
			for range 2 {
				if code, body := call(token); code != 200 || body != tc.want {
					t.Errorf("drain: %d %q, want 200 %q", code, body, tc.want)
				}
			}
		})
	}
}

// TestToken: the token is the session key's, and differs by key.
func TestToken(t *testing.T) {
	a, b := drain.Token([]byte("key-one-0123456789abcdef0123456789")), drain.Token([]byte("key-two-0123456789abcdef0123456789"))
	if a == b || len(a) != 32 || a != drain.Token([]byte("key-one-0123456789abcdef0123456789")) {
		t.Errorf("tokens %q and %q: want 32 hex digits, one per key", a, b)
	}
}
