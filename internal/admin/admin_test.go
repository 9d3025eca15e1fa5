package admin_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/admin"
)

func TestMux(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "admin_test_total", Help: "a counter"})
	reg.MustRegister(c)
	c.Inc()
	var ready atomic.Bool
	m := admin.New(reg, admin.Awaiting(ready.Load, "no configuration yet"))
	m.Handle("/debug/thing", "the thing", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "thing") }))
	srv := httptest.NewServer(m)
	defer srv.Close()
	get := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/", 200, "/debug/thing the thing"},
		{"GET", "/metrics", 200, "admin_test_total 1"},
		{"GET", "/healthz", 200, "ok"},
		{"GET", "/readyz", 503, "not ready: no configuration yet"},
		{"GET", "/debug/thing", 200, "thing"},
		{"GET", "/nothing", 404, ""},
		{"POST", "/healthz", 405, ""},
	} {
		code, body := get(c.method, c.path)
		if code != c.code || !strings.Contains(strings.Join(strings.Fields(body), " "), c.body) {
			t.Errorf("%s %s: %d %q, want %d with %q", c.method, c.path, code, body, c.code, c.body)
		}
	}
	code, index := get("GET", "/")
	for _, p := range []string{"/metrics", "/healthz", "/readyz", "/debug/thing"} {
		if !strings.Contains(index, p+" ") {
			t.Errorf("the index (%d) does not list %s:\n%s", code, p, index)
		}
	}
	ready.Store(true)
	if code, body := get("GET", "/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("ready: /readyz %d %q", code, body)
	}
}

// TestLocalOnly: a client connected from and to loopback addresses gets the endpoint; another
// 403, also one from a loopback address to the pod's address (a mesh sidecar's redirect).
func TestLocalOnly(t *testing.T) {
	h := admin.LocalOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "secret") }))
	for _, c := range []struct {
		remote, local string
		want          int
	}{
		{"127.0.0.1:5555", "127.0.0.1:19000", 200},
		{"[::1]:5555", "[::1]:19000", 200},
		{"10.1.2.3:5555", "10.1.2.4:19000", 403},
		{"192.0.2.1:80", "127.0.0.1:19000", 403},
		{"127.0.0.6:5555", "10.1.2.4:19000", 403}, // Istio's inbound redirect
		{"127.0.0.1:5555", "", 403},               // no connection
		{"garbage", "127.0.0.1:19000", 403},
	} {
		req := httptest.NewRequest("GET", "/debug/xds", nil)
		req.RemoteAddr = c.remote
		if c.local != "" {
			addr, err := net.ResolveTCPAddr("tcp", c.local)
			if err != nil {
				t.Fatal(err)
			}
			req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, addr))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want || (c.want == 200) != (rec.Body.String() == "secret") {
			t.Errorf("from %s to %s: %d %q, want %d", c.remote, c.local, rec.Code, rec.Body.String(), c.want)
		}
	}
}
