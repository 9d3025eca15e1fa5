package kubernetes_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/mux"
	"github.com/mcpgate/mcpgate/internal/admin"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
	"github.com/mcpgate/mcpgate/test/envoydouble/dataplane"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
	"github.com/mcpgate/mcpgate/xds"
)

// descRecorder is a prometheus.Registerer that keeps the name and labels of every metric
// registered with it.
type descRecorder struct{ labels map[string][]string }

// descPattern reads a prometheus.Desc's String().
var descPattern = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*variableLabels: \{([^}]*)\}\}$`)

func (r *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		m := descPattern.FindStringSubmatch(d.String())
		if m == nil {
			continue
		}
		var labels []string
		if m[2] != "" {
			labels = strings.Split(m[2], ",")
		}
		r.labels[m[1]] = labels
	}
	return nil
}

func (r *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *descRecorder) Unregister(prometheus.Collector) bool { return true }

// metricLabels returns the metrics that the controller, the xDS server and the extproc sidecar
// export, with their labels, as their own constructors register them, and the Envoy statistics
// the sidecar adds, as envoydouble writes them.
func metricLabels(t *testing.T) map[string][]string {
	t.Helper()
	rec := &descRecorder{labels: map[string][]string{}}
	srv := xds.New(nil)
	if err := srv.RegisterMetrics(rec); err != nil {
		t.Fatal(err)
	}
	if _, err := kubernetes.New(testCluster.cfg, kubernetes.Options{Publisher: srv, Registerer: rec}); err != nil {
		t.Fatal(err)
	}
	ep, err := extproc.New(extproc.Config{Registerer: rec})
	if err != nil {
		t.Fatal(err)
	}
	ep.Close()
	mux.New(mux.Options{Registerer: rec}) // the sidecar's mux (its sessions)
	// Envoy's statistics, which the sidecar's /metrics adds (--envoy-stats-url): those
	// envoydouble reproduces, with Envoy's names and tags, as its /stats/prometheus writes them,
	// read by the sidecar's EnvoyStats, which labels them with its --gateway.
	snap := &xdsconf.Snapshot{Listeners: map[string]*xdsconf.Listener{"l": {Name: "l", HCM: &xdsconf.HCM{StatPrefix: "l"}}},
		Clusters: map[string]*xdsconf.Cluster{"c": {Name: "c", StatName: "c"}}}
	var text bytes.Buffer
	dataplane.New(slog.New(slog.DiscardHandler), io.Discard, snap, 0).WritePrometheus(&text, "admin")
	envoyAdmin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(text.Bytes()) }))
	defer envoyAdmin.Close()
	stats, err := admin.NewEnvoyStats(envoyAdmin.URL+"/stats/prometheus", "ns/gw", rec, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	envoy, err := stats.Gatherer(prometheus.NewRegistry()).Gather()
	if err != nil || len(envoy) == 0 {
		t.Fatalf("envoydouble's statistics: %v\n%s", err, text.String())
	}
	for _, mf := range envoy {
		var labels []string
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			labels = append(labels, lp.GetName())
		}
		rec.labels[mf.GetName()] = labels
	}
	return rec.labels
}

// scrapeLabels are the labels Prometheus adds when it scrapes the pods that the
// prometheus.io/scrape annotations name (job and instance always; namespace and pod from the
// usual Kubernetes service discovery relabelling).
var scrapeLabels = []string{"job", "instance", "namespace", "pod"}

var (
	metricName = regexp.MustCompile(`(?:mcpgate|envoy)_[a-z0-9_]+`)
	braces     = regexp.MustCompile(`\{[^}]*\}`)
	matcher    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
	grouping   = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	legend     = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
	labelValue = regexp.MustCompile(`label_values\(\s*(mcpgate_[a-z0-9_]+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)
)

// queried returns the metrics a PromQL query names: the metric names outside label matchers and
// groupings (Envoy's label names start with envoy_ too).
func queried(expr string) []string {
	return metricName.FindAllString(braces.ReplaceAllString(grouping.ReplaceAllString(expr, ""), ""), -1)
}

// checkQuery returns what is wrong with a PromQL query of the dashboard: a metric that mcpgate
// does not export, or a label that its metrics do not have. legendFormat's labels are checked
// too.
func checkQuery(metrics map[string][]string, expr, legendFormat string) []string {
	var problems []string
	have := slices.Clone(scrapeLabels)
	for _, m := range queried(expr) {
		name := m
		if base, ok := strings.CutSuffix(m, "_bucket"); ok {
			if _, known := metrics[base]; known {
				name = base
				have = append(have, "le")
			}
		}
		for _, suffix := range []string{"_sum", "_count"} {
			if base, ok := strings.CutSuffix(m, suffix); ok {
				if _, known := metrics[base]; known {
					name = base
				}
			}
		}
		labels, ok := metrics[name]
		if !ok {
			problems = append(problems, "queries "+m+", which neither mcpgate nor Envoy (as envoydouble reproduces it) exports")
		}
		have = append(have, labels...)
	}
	var used []string
	for _, m := range matcher.FindAllStringSubmatch(expr, -1) {
		used = append(used, m[1])
	}
	for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			used = append(used, strings.TrimSpace(l))
		}
	}
	for _, m := range legend.FindAllStringSubmatch(legendFormat, -1) {
		used = append(used, m[1])
	}
	for _, l := range used {
		if l != "" && !slices.Contains(have, l) {
			problems = append(problems, "uses label "+l+", which its metrics do not have")
		}
	}
	return problems
}

// dashboardPanel is a panel of a Grafana dashboard; a collapsed row holds its panels in Panels.
type dashboardPanel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// allPanels returns panels with the panels of collapsed rows after each row: Grafana keeps a
// collapsed row's panels inside it, and they query all the same once it is expanded.
func allPanels(panels []dashboardPanel) []dashboardPanel {
	var all []dashboardPanel
	for _, p := range panels {
		all = append(all, p)
		all = append(all, allPanels(p.Panels)...)
	}
	return all
}

// TestGrafanaDashboardMetrics checks that every query of the dashboards in deploy/grafana names
// metrics and labels that mcpgate exports: the metrics are read from the registrations of the
// controller, the xDS server and ext_proc, and Envoy's from envoydouble's /stats/prometheus
// output (which reproduces Envoy's names and tags), not from the source text.
func TestGrafanaDashboardMetrics(t *testing.T) {
	metrics := metricLabels(t)
	dashboards, err := filepath.Glob(filepath.Join(testCluster.repo, "deploy", "grafana", "*.json"))
	if err != nil || len(dashboards) == 0 {
		t.Fatalf("no dashboard in deploy/grafana (%v)", err)
	}
	for _, path := range dashboards {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
			Panels []dashboardPanel `json:"panels"`
		}
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		shown := map[string]bool{}
		for _, p := range allPanels(dash.Panels) {
			if p.Type == "row" {
				continue // a row only groups the panels below it
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", path, p.Title)
			}
			for _, tg := range p.Targets {
				for _, problem := range checkQuery(metrics, tg.Expr, tg.LegendFormat) {
					t.Errorf("%s: panel %q %s", path, p.Title, problem)
				}
				for _, m := range queried(tg.Expr) {
					shown[strings.TrimSuffix(m, "_bucket")] = true
				}
			}
		}
		for _, v := range dash.Templating.List {
			q, _ := json.Marshal(v.Query)
			for _, m := range labelValue.FindAllStringSubmatch(string(q), -1) {
				if !slices.Contains(metrics[m[1]], m[2]) {
					t.Errorf("%s: variable %s takes label %s of %s, which it does not have", path, v.Name, m[2], m[1])
				}
			}
		}
		for _, want := range []string{"mcpgate_mcp_requests_total", "mcpgate_mcp_request_duration_seconds", "mcpgate_authn_failures_total", "mcpgate_extproc_streams_active", "mcpgate_xds_nacks_total", "mcpgate_config_problems", "mcpgate_mux_sessions",
			"envoy_http_downstream_rq_xx", "envoy_cluster_upstream_rq_total", "mcpgate_envoy_stats_up"} {
			if !shown[want] {
				t.Errorf("%s: no panel shows %s", path, want)
			}
		}
	}
}

// TestCheckQuery shows that the dashboard check finds an unknown metric, an unknown label in a
// matcher, a grouping or a legend, and accepts what exists.
func TestCheckQuery(t *testing.T) {
	metrics := map[string][]string{"mcpgate_x_total": {"gateway", "tool"}, "mcpgate_y_seconds": {"method"}, "envoy_c_total": {"envoy_cluster_name"}}
	for expr, want := range map[string]int{
		`sum by (tool) (rate(mcpgate_x_total{gateway=~"$gateway"}[5m]))`:                    0,
		`histogram_quantile(0.9, sum by (le, method) (rate(mcpgate_y_seconds_bucket[5m])))`: 0,
		`sum by (pod) (mcpgate_x_total)`:                                                    0,
		`sum(rate(mcpgate_z_total[5m]))`:                                                    1,
		`sum(rate(mcpgate_x_total{decision="deny"}[5m]))`:                                   1,
		`sum by (route) (mcpgate_x_total)`:                                                  1,
		`sum by (le) (rate(mcpgate_x_total[5m]))`:                                           1,
		`sum by (envoy_cluster_name) (rate(envoy_c_total{envoy_cluster_name!="x"}[5m]))`:    0,
		`sum by (envoy_response_code_class) (rate(envoy_c_total[5m]))`:                      1,
		`sum(rate(envoy_d_total[5m]))`:                                                      1,
	} {
		if got := checkQuery(metrics, expr, ""); len(got) != want {
			t.Errorf("%s: %d problems %q, want %d", expr, len(got), got, want)
		}
	}
	if got := checkQuery(metrics, `sum by (tool) (mcpgate_x_total)`, "{{ tool }} {{decision}}"); len(got) != 1 {
		t.Errorf("legend with an unknown label: %q", got)
	}
}
