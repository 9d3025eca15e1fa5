package admin_test

import (
	"io"
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

// TestLocalOnly: a loopback client gets the endpoint, another 403.
func TestLocalOnly(t *testing.T) {
	h := admin.LocalOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "secret") }))
	for addr, want := range map[string]int{"127.0.0.1:5555": 200, "[::1]:5555": 200, "10.1.2.3:5555": 403, "192.0.2.1:80": 403, "garbage": 403} {
		req := httptest.NewRequest("GET", "/debug/xds", nil)
		req.RemoteAddr = addr
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want || (want == 200) != (rec.Body.String() == "secret") {
			t.Errorf("from %s: %d %q, want %d", addr, rec.Code, rec.Body.String(), want)
		}
	}
}
