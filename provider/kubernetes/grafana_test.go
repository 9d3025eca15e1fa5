package kubernetes_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
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
// export, with their labels, as their own constructors register them.
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
	return rec.labels
}

// scrapeLabels are the labels Prometheus adds when it scrapes the pods that the
// prometheus.io/scrape annotations name (job and instance always; namespace and pod from the
// usual Kubernetes service discovery relabelling).
var scrapeLabels = []string{"job", "instance", "namespace", "pod"}

var (
	metricName = regexp.MustCompile(`mcpgate_[a-z0-9_]+`)
	matcher    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
	grouping   = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	legend     = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
	labelValue = regexp.MustCompile(`label_values\(\s*(mcpgate_[a-z0-9_]+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)
)

// checkQuery returns what is wrong with a PromQL query of the dashboard: a metric that mcpgate
// does not export, or a label that its metrics do not have. legendFormat's labels are checked
// too.
func checkQuery(metrics map[string][]string, expr, legendFormat string) []string {
	var problems []string
	have := slices.Clone(scrapeLabels)
	for _, m := range metricName.FindAllString(expr, -1) {
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
			problems = append(problems, "queries "+m+", which mcpgate does not export")
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

// TestGrafanaDashboardMetrics checks that every query of the dashboards in deploy/grafana names
// metrics and labels that mcpgate exports: the metrics are read from the registrations of the
// controller, the xDS server and ext_proc, not from the source text.
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
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr         string `json:"expr"`
					LegendFormat string `json:"legendFormat"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		shown := map[string]bool{}
		for _, p := range dash.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", path, p.Title)
			}
			for _, tg := range p.Targets {
				for _, problem := range checkQuery(metrics, tg.Expr, tg.LegendFormat) {
					t.Errorf("%s: panel %q %s", path, p.Title, problem)
				}
				for _, m := range metricName.FindAllString(tg.Expr, -1) {
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
		for _, want := range []string{"mcpgate_mcp_requests_total", "mcpgate_mcp_request_duration_seconds", "mcpgate_authn_failures_total", "mcpgate_extproc_streams_active", "mcpgate_xds_nacks_total", "mcpgate_config_problems"} {
			if !shown[want] {
				t.Errorf("%s: no panel shows %s", path, want)
			}
		}
	}
}

// TestCheckQuery shows that the dashboard check finds an unknown metric, an unknown label in a
// matcher, a grouping or a legend, and accepts what exists.
func TestCheckQuery(t *testing.T) {
	metrics := map[string][]string{"mcpgate_x_total": {"gateway", "tool"}, "mcpgate_y_seconds": {"method"}}
	for expr, want := range map[string]int{
		`sum by (tool) (rate(mcpgate_x_total{gateway=~"$gateway"}[5m]))`:                    0,
		`histogram_quantile(0.9, sum by (le, method) (rate(mcpgate_y_seconds_bucket[5m])))`: 0,
		`sum by (pod) (mcpgate_x_total)`:                                                    0,
		`sum(rate(mcpgate_z_total[5m]))`:                                                    1,
		`sum(rate(mcpgate_x_total{decision="deny"}[5m]))`:                                   1,
		`sum by (route) (mcpgate_x_total)`:                                                  1,
		`sum by (le) (rate(mcpgate_x_total[5m]))`:                                           1,
	} {
		if got := checkQuery(metrics, expr, ""); len(got) != want {
			t.Errorf("%s: %d problems %q, want %d", expr, len(got), got, want)
		}
	}
	if got := checkQuery(metrics, `sum by (tool) (mcpgate_x_total)`, "{{ tool }} {{decision}}"); len(got) != 1 {
		t.Errorf("legend with an unknown label: %q", got)
	}
}
