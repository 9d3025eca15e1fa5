// Package admin is the admin HTTP endpoint every mcpgate process serves: /metrics, /healthz,
// /readyz, the endpoints a process adds (such as /debug/xds), and an index at / that lists them.
package admin

import (
	"fmt"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxScrapes bounds the /metrics requests served at once (promhttp answers 503 past it): a
// scrape reads every metric, and the data plane's sidecar reads Envoy's statistics too.
const maxScrapes = 4

// Mux routes the admin endpoints. Create it with New; it is an http.Handler.
type Mux struct {
	mux   *http.ServeMux
	index [][2]string // path, what it serves
}

// New returns a Mux serving /metrics from g, /healthz (the process is up) and /readyz (200 when
// awaited returns ""; else 503 with what it returns: what is awaited).
func New(g prometheus.Gatherer, awaited func() string) *Mux {
	m := &Mux{mux: http.NewServeMux()}
	m.Handle("/metrics", "Prometheus metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{MaxRequestsInFlight: maxScrapes}))
	m.Handle("/healthz", "200 while the process runs", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	}))
	m.Handle("/readyz", "200 once ready, else 503 saying what is awaited", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if what := awaited(); what != "" {
			http.Error(w, "not ready: "+what, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	m.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, e := range m.index {
			fmt.Fprintf(w, "%-12s %s\n", e[0], e[1])
		}
	})
	return m
}

// NewRegistry returns a Prometheus registry with the Go runtime and process collectors: the
// registry of a process's /metrics, to which its parts add their own metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Awaiting returns the awaited function of New for a process that is ready once ready reports
// true, awaiting what until then.
func Awaiting(ready func() bool, what string) func() string {
	return func() string {
		if ready() {
			return ""
		}
		return what
	}
}

// Handle serves h for GET requests to path and lists it in the index with help.
func (m *Mux) Handle(path, help string, h http.Handler) {
	m.mux.Handle("GET "+path, h)
	m.index = append(m.index, [2]string{path, help})
}

// LocalOnly serves h to clients on the loopback interface only, 403 to others: for endpoints that
// show what other pods must not read (the controller's admin port is reachable in the cluster
// for Prometheus). Both ends of the connection must be loopback addresses: in a service mesh
// whose sidecar redirects inbound traffic, every client arrives from a loopback address (Istio's
// 127.0.0.6) but to the pod's own address. `kubectl port-forward` connects to the pod's loopback
// from its loopback, so it reaches them.
func LocalOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if !loopback(r.RemoteAddr) || local == nil || !loopback(local.String()) {
			http.Error(w, "forbidden: this endpoint answers loopback clients only (kubectl port-forward)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopback reports whether addr ("HOST:PORT") is a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// ServeHTTP routes r.
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }
