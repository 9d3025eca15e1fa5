package double_test

import (
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mcpgate/mcpgate/contract"
)

// TestStatsPrometheus: the admin /stats/prometheus counts requests as Envoy does and writes them
// as Envoy does: a request per connection manager (stat_prefix), its response's code class, an
// upstream request per cluster only once it has a connection; the admin's own requests under
// "admin"; every connection manager and cluster from 0.
func TestStatsPrometheus(t *testing.T) {
	e := newEnv(t, answer(nil))
	a := echo(t, "a")
	closed := freeAddr(t) // nothing listens: the connection fails (503 UF)
	l := listener(t, e.listen, nil, nil)
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("down", "/down", "down", nil), prefixRoute("a", "/a", "a", nil))),
		staticCluster("a", a.Listener.Addr().String()), staticCluster("down", closed), staticCluster("dotted.name", closed))
	for path, want := range map[string]int{"/a": 200, "/down": 503, "/none": 404} {
		if resp, body := do(t, "GET", e.url(path), nil); resp.StatusCode != want {
			t.Fatalf("GET %s: %d %q, want %d", path, resp.StatusCode, body, want)
		}
	}
	scrape := func() (string, map[string]*dto.MetricFamily) {
		t.Helper()
		resp, body := do(t, "GET", "http://"+e.d.AdminAddr+"/stats/prometheus", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("/stats/prometheus: %d %s", resp.StatusCode, body)
		}
		p := expfmt.NewTextParser(model.LegacyValidation)
		mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("/stats/prometheus is not the Prometheus text format: %v\n%s", err, body)
		}
		return body, mfs
	}
	body, mfs := scrape()
	// Envoy's lines (PrometheusStatsFormatter): TYPE without HELP, the tags in extraction order.
	for _, line := range []string{
		"# TYPE envoy_http_downstream_rq_xx counter\n",
		`envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="gw"} 1` + "\n",
		`envoy_cluster_upstream_rq_total{envoy_cluster_name="a"} 1` + "\n",
		// a dot in a cluster name ends Envoy's envoy.cluster_name tag; the rest stays in the name
		`envoy_cluster_name_upstream_rq_total{envoy_cluster_name="dotted"} 0` + "\n",
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/stats/prometheus has no line %q:\n%s", line, body)
		}
	}
	if strings.Contains(body, "# HELP") {
		t.Errorf("/stats/prometheus has HELP lines, Envoy writes none:\n%s", body)
	}
	counter := func(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
		t.Helper()
		for _, m := range mfs[name].GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			match := len(have) == len(labels)/2
			for i := 0; match && i < len(labels); i += 2 {
				match = have[labels[i]] == labels[i+1]
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
		t.Errorf("no %s%q", name, labels)
		return -1
	}
	const prefix, class = "envoy_http_conn_manager_prefix", "envoy_response_code_class"
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"envoy_http_downstream_rq_total", []string{prefix, "gw"}, 3},
		{"envoy_http_downstream_rq_xx", []string{class, "1", prefix, "gw"}, 0},
		{"envoy_http_downstream_rq_xx", []string{class, "2", prefix, "gw"}, 1},
		{"envoy_http_downstream_rq_xx", []string{class, "3", prefix, "gw"}, 0},
		{"envoy_http_downstream_rq_xx", []string{class, "4", prefix, "gw"}, 1},
		{"envoy_http_downstream_rq_xx", []string{class, "5", prefix, "gw"}, 1},
		// the bootstrap's mux upstream listener, which served nothing
		{"envoy_http_downstream_rq_total", []string{prefix, contract.MuxUpstreamListener}, 0},
		{"envoy_cluster_upstream_rq_total", []string{"envoy_cluster_name", "a"}, 1},
		// the connection failed: no request attached to one
		{"envoy_cluster_upstream_rq_total", []string{"envoy_cluster_name", "down"}, 0},
		// the ADS stream, a request of the xDS cluster
		{"envoy_cluster_upstream_rq_total", []string{"envoy_cluster_name", contract.XDSCluster}, 1},
	} {
		if got := counter(mfs, c.name, c.labels...); got != c.want {
			t.Errorf("%s%q = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The admin listener's own: this scrape was a request, the one before it a 200.
	rq, ok := counter(mfs, "envoy_http_downstream_rq_total", prefix, "admin"), counter(mfs, "envoy_http_downstream_rq_xx", class, "2", prefix, "admin")
	_, again := scrape()
	if got := counter(again, "envoy_http_downstream_rq_total", prefix, "admin"); got != rq+1 {
		t.Errorf("admin requests %v then %v, want one more", rq, got)
	}
	if got := counter(again, "envoy_http_downstream_rq_xx", class, "2", prefix, "admin"); got != ok+1 {
		t.Errorf("admin 2xx responses %v then %v, want one more", ok, got)
	}
}
