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
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/drain"
	"github.com/mcpgate/mcpgate/internal/freeport"
	"github.com/mcpgate/mcpgate/test/envoydouble/double"
)

// startEnvoy starts the Envoy test double with a listener that proxies every request to up, and
// returns the listener's and the admin's addresses.
func startEnvoy(t *testing.T, up string) (listen, adminAddr string, d *double.Double) {
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
	d, err = double.Start(context.Background(), double.Options{Bootstrap: file, Log: slog.New(slog.DiscardHandler), AccessLog: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return fmt.Sprintf("127.0.0.1:%d", port), d.AdminAddr, d
}

// TestDrain: /drain refuses a request without the token (403); with it, it drains Envoy once and
// answers when Envoy's downstream connections are gone or when the bound comes, saying how many
// are left; a second request gets the same answer. As Envoy, the double closes no idle
// connection: a kept-alive connection used during the drain is asked to close and does, while an
// open event stream stays to the bound. With Envoy's admin refusing connections, the drain ends
// after its minimum.
func TestDrain(t *testing.T) {
	const token = "t0ken"
	for _, tc := range []struct {
		name   string
		stream bool // an event stream stays open
		use    bool // a kept-alive connection sends requests during the drain
		gone   bool // Envoy's admin refuses connections
		want   string
	}{
		{"connection used during the drain", false, true, false, "drained: 0 downstream connections left"},
		{"open stream", true, false, false, "drained: 1 downstream connections left"},
		{"Envoy gone", false, false, true, "drained: Envoy's downstream connections unknown"},
	} {
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
			listen, admin, _ := startEnvoy(t, up.Listener.Addr().String())
			if tc.gone {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				admin = ln.Addr().String()
				ln.Close()
			}
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			get := func(path string) (*http.Response, error) {
				resp, err := client.Get("http://" + listen + path)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				return resp, err
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				resp, err := get("/x")
				if err == nil && resp.StatusCode == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the listener does not serve: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if tc.stream {
				client.CloseIdleConnections()
				resp, err := http.Get("http://" + listen + "/stream")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
			}
			var onDrain atomic.Bool
			h := httptest.NewServer(drain.Handler(drain.Config{EnvoyAdmin: admin, Token: token,
				Min: 50 * time.Millisecond, Max: 3 * time.Second, Poll: 20 * time.Millisecond, OnDrain: func() { onDrain.Store(true) }}))
			defer h.Close()
			call := func(tok string) (int, string) {
				req, _ := http.NewRequest(http.MethodGet, h.URL+drain.Path, nil)
				if tok != "" {
					req.Header.Set(drain.TokenHeader, tok)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return 0, ""
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
			type answer struct {
				code int
				body string
			}
			first := make(chan answer, 1)
			go func() {
				code, body := call(token)
				first <- answer{code, body}
			}()
			if tc.use {
				// The kept-alive connection's next response asks it to close, once Envoy drains.
				for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
					resp, err := get("/x")
					if err == nil && resp.Close {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("no response asks the client to close: %v", err)
					}
				}
			}
			a := <-first
			if a.code != 200 || a.body != tc.want {
				t.Errorf("drain: %d %q, want 200 %q", a.code, a.body, tc.want)
			}
			if code, body := call(token); code != 200 || body != tc.want {
				t.Errorf("second drain request: %d %q, want the first's answer", code, body)
			}
			if onDrain.Load() == tc.gone {
				t.Errorf("OnDrain called: %v, want %v", onDrain.Load(), !tc.gone)
			}
		})
	}
}

// TestDrainAgainAndRestart: a drain that ended does not answer the next /drain from its result:
// Envoy may have been restarted in the pod meanwhile (a probe, a quit), and the pod's termination
// must drain it again (the second drain lasts its minimum too). With RestartAfter, an Envoy still
// up that long after a drain (no termination followed) is told to quit.
func TestDrainAgainAndRestart(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	_, admin, d := startEnvoy(t, up.Listener.Addr().String())
	const token, minimum = "t0ken", 300 * time.Millisecond
	h := httptest.NewServer(drain.Handler(drain.Config{EnvoyAdmin: admin, Token: token, Min: minimum, Max: time.Second,
		Poll: 20 * time.Millisecond, RestartAfter: 2 * time.Second}))
	defer h.Close()
	for i := range 2 {
		req, _ := http.NewRequest(http.MethodGet, h.URL+drain.Path, nil)
		req.Header.Set(drain.TokenHeader, token)
		began := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// a lower bound: the drain sleeps its minimum before it reads Envoy's connections
		if took := time.Since(began); resp.StatusCode != 200 || took < minimum {
			t.Errorf("drain %d: %d after %s, want 200 after its minimum %s (a drain of its own)", i+1, resp.StatusCode, took, minimum)
		}
	}
	select {
	case <-d.Quit():
	case <-time.After(30 * time.Second):
		t.Fatal("Envoy, still up after the drain, was not told to quit")
	}
}

// TestToken: the token is the session key's, and differs by key.
func TestToken(t *testing.T) {
	a, b := drain.Token([]byte("key-one-0123456789abcdef0123456789")), drain.Token([]byte("key-two-0123456789abcdef0123456789"))
	if a == b || len(a) != 32 || a != drain.Token([]byte("key-one-0123456789abcdef0123456789")) {
		t.Errorf("tokens %q and %q: want 32 hex digits, one per key", a, b)
	}
}
