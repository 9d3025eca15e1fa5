package admin_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mcpgate/mcpgate/internal/admin"
)

// envoyText is what Envoy's /stats/prometheus writes (PrometheusStatsFormatter): a TYPE line per
// family and no HELP, counters, then gauges, then histograms, each family followed by a blank
// line, "{}" for a stat without tags, histogram bounds in %.32g.
const envoyText = `# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name="everything"} 7
envoy_cluster_upstream_rq_total{envoy_cluster_name="xds_cluster"} 1

# TYPE envoy_http_downstream_rq_xx counter
envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="gw_http"} 5
envoy_http_downstream_rq_xx{envoy_response_code_class="5",envoy_http_conn_manager_prefix="gw_http"} 2

# TYPE envoy_server_live gauge
envoy_server_live{} 1

# TYPE envoy_http_downstream_rq_time histogram
envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="gw_http",le="0.5"} 1
envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="gw_http",le="1"} 3
envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="gw_http",le="5"} 6
envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="gw_http",le="3600000"} 7
envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="gw_http",le="+Inf"} 7
envoy_http_downstream_rq_time_sum{envoy_http_conn_manager_prefix="gw_http"} 12.5
envoy_http_downstream_rq_time_count{envoy_http_conn_manager_prefix="gw_http"} 7

`

// envoyDouble serves body (and status) as Envoy's /stats/prometheus, settable while it runs.
type envoyDouble struct {
	srv    *httptest.Server
	body   atomic.Pointer[string]
	status atomic.Int32
}

func newEnvoyDouble(t *testing.T, body string) *envoyDouble {
	d := &envoyDouble{}
	d.body.Store(&body)
	d.status.Store(http.StatusOK)
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stats/prometheus" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.WriteHeader(int(d.status.Load()))
		io.WriteString(w, *d.body.Load())
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *envoyDouble) url() string { return d.srv.URL + "/stats/prometheus" }

// scrapeSetup is a process's admin endpoint with its own counter mcpgate_test_total and Envoy's
// statistics from url, and its log.
type scrapeSetup struct {
	t     *testing.T
	srv   *httptest.Server
	stats *admin.EnvoyStats
	log   *bytes.Buffer
}

func newScrapeSetup(t *testing.T, url string) *scrapeSetup {
	t.Helper()
	reg := prometheus.NewRegistry()
	own := prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpgate_test_total", Help: "mcpgate's own"})
	own.Add(3)
	reg.MustRegister(own)
	var log bytes.Buffer
	stats, err := admin.NewEnvoyStats(url, reg, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(admin.New(stats.Gatherer(reg), func() string { return "" }))
	t.Cleanup(srv.Close)
	return &scrapeSetup{t: t, srv: srv, stats: stats, log: &log}
}

// scrape GETs /metrics as Prometheus does and returns its text and families; it fails the test
// unless the answer is 200 with a valid exposition of one TYPE line per family.
func (s *scrapeSetup) scrape() (string, map[string]*dto.MetricFamily) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/metrics", nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("/metrics: %s %s", resp.Status, b)
	}
	types := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			if types[f[2]]++; types[f[2]] == 2 {
				s.t.Errorf("/metrics has two TYPE lines for %s:\n%s", f[2], b)
			}
		}
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		s.t.Fatalf("/metrics is not a valid exposition: %v\n%s", err, b)
	}
	return string(b), mfs
}

// value returns the value of the counter or gauge sample of family name with the label value
// pairs labels, and whether it is there.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		match := len(have) == len(labels)/2
		for i := 0; match && i+1 < len(labels); i += 2 {
			match = have[labels[i]] == labels[i+1]
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestEnvoyStatsMerged: /metrics serves the process's metrics and then Envoy's, with their types,
// tags and histograms as Envoy wrote them, in one valid exposition.
func TestEnvoyStatsMerged(t *testing.T) {
	envoy := newEnvoyDouble(t, envoyText)
	s := newScrapeSetup(t, envoy.url())
	text, mfs := s.scrape()
	if v, ok := value(mfs, "mcpgate_test_total"); !ok || v != 3 {
		t.Errorf("mcpgate_test_total = %v (%t), want 3", v, ok)
	}
	if v, ok := value(mfs, "mcpgate_envoy_stats_up"); !ok || v != 1 {
		t.Errorf("mcpgate_envoy_stats_up = %v (%t), want 1", v, ok)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"envoy_cluster_upstream_rq_total", []string{"envoy_cluster_name", "everything"}, 7},
		{"envoy_cluster_upstream_rq_total", []string{"envoy_cluster_name", "xds_cluster"}, 1},
		{"envoy_http_downstream_rq_xx", []string{"envoy_response_code_class", "5", "envoy_http_conn_manager_prefix", "gw_http"}, 2},
		{"envoy_server_live", nil, 1},
	} {
		if v, ok := value(mfs, c.name, c.labels...); !ok || v != c.want {
			t.Errorf("%s%v = %v (%t), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	for name, want := range map[string]dto.MetricType{"envoy_cluster_upstream_rq_total": dto.MetricType_COUNTER,
		"envoy_http_downstream_rq_xx": dto.MetricType_COUNTER, "envoy_server_live": dto.MetricType_GAUGE,
		"envoy_http_downstream_rq_time": dto.MetricType_HISTOGRAM} {
		if got := mfs[name].GetType(); got != want {
			t.Errorf("%s is a %s, want a %s", name, got, want)
		}
	}
	h := mfs["envoy_http_downstream_rq_time"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 7 || h.GetSampleSum() != 12.5 || len(h.GetBucket()) != 5 || h.GetBucket()[2].GetUpperBound() != 5 || h.GetBucket()[2].GetCumulativeCount() != 6 {
		t.Errorf("envoy_http_downstream_rq_time = %v, want Envoy's histogram", h)
	}
	// The process's own first, then Envoy's.
	if own, env := strings.Index(text, "mcpgate_test_total"), strings.Index(text, "envoy_cluster_upstream_rq_total"); own < 0 || env < own {
		t.Errorf("/metrics does not serve mcpgate's metrics before Envoy's:\n%s", text)
	}
	if !strings.Contains(s.log.String(), "Envoy's statistics are read") {
		t.Errorf("no log line that Envoy's statistics are read: %q", s.log.String())
	}
}

// TestEnvoyStatsClash: a family Envoy has under a name of the process's is left out, so /metrics
// holds one TYPE line and the process's samples for it; the clash is logged once.
func TestEnvoyStatsClash(t *testing.T) {
	envoy := newEnvoyDouble(t, envoyText+"# TYPE mcpgate_test_total gauge\nmcpgate_test_total{} 99\n\n")
	s := newScrapeSetup(t, envoy.url())
	for range 2 {
		text, mfs := s.scrape()
		if v, ok := value(mfs, "mcpgate_test_total"); !ok || v != 3 || mfs["mcpgate_test_total"].GetType() != dto.MetricType_COUNTER {
			t.Errorf("mcpgate_test_total = %v (%t) of type %s, want mcpgate's counter, 3:\n%s", v, ok, mfs["mcpgate_test_total"].GetType(), text)
		}
		if _, ok := value(mfs, "envoy_cluster_upstream_rq_total", "envoy_cluster_name", "everything"); !ok {
			t.Error("Envoy's other families are left out too")
		}
	}
	if n := strings.Count(s.log.String(), "family=mcpgate_test_total"); n != 1 {
		t.Errorf("the clash is logged %d times, want once: %q", n, s.log.String())
	}
}

// TestEnvoyStatsDown: while Envoy's statistics cannot be read (it refuses connections, answers
// an error, writes what is not the text format, or more than MaxBytes), /metrics serves the
// process's metrics with mcpgate_envoy_stats_up 0; each change is logged once, not each scrape.
func TestEnvoyStatsDown(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		s := newScrapeSetup(t, "http://"+addr+"/stats/prometheus")
		for range 3 {
			_, mfs := s.scrape()
			if v, ok := value(mfs, "mcpgate_test_total"); !ok || v != 3 {
				t.Errorf("mcpgate_test_total = %v (%t), want 3", v, ok)
			}
			if v, ok := value(mfs, "mcpgate_envoy_stats_up"); !ok || v != 0 {
				t.Errorf("mcpgate_envoy_stats_up = %v (%t), want 0", v, ok)
			}
		}
		if n := strings.Count(s.log.String(), "cannot be read"); n != 1 {
			t.Errorf("%d log lines for 3 scrapes while Envoy is down, want 1: %q", n, s.log.String())
		}
	})

	envoy := newEnvoyDouble(t, envoyText)
	s := newScrapeSetup(t, envoy.url())
	s.stats.MaxBytes = int64(len(envoyText))
	up := func(want float64) map[string]*dto.MetricFamily {
		t.Helper()
		_, mfs := s.scrape()
		if v, ok := value(mfs, "mcpgate_envoy_stats_up"); !ok || v != want {
			t.Errorf("mcpgate_envoy_stats_up = %v (%t), want %v", v, ok, want)
		}
		if v, ok := value(mfs, "mcpgate_test_total"); !ok || v != 3 {
			t.Errorf("mcpgate_test_total = %v (%t), want 3", v, ok)
		}
		return mfs
	}
	if mfs := up(1); mfs["envoy_cluster_upstream_rq_total"] == nil {
		t.Fatal("a body of exactly MaxBytes is refused")
	}
	set := func(body string) { envoy.body.Store(&body) }
	for _, c := range []struct {
		name   string
		change func()
	}{
		{"an error status", func() { envoy.status.Store(http.StatusServiceUnavailable) }},
		{"not the text format", func() { set("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\" 1\n") }},
		{"a TYPE line twice", func() { set("# TYPE envoy_a counter\nenvoy_a{} 1\n# TYPE envoy_a counter\nenvoy_a{} 2\n") }},
		{"over MaxBytes", func() { set(envoyText + "\n") }}, // valid, one byte too long
	} {
		c.change()
		for range 2 {
			if mfs := up(0); len(mfs) == 0 || mfs["envoy_cluster_upstream_rq_total"] != nil || mfs["envoy_a"] != nil {
				t.Errorf("%s: Envoy's families are served: %v", c.name, mfs)
			}
		}
		envoy.status.Store(http.StatusOK)
		set(envoyText)
		up(1)
	}
	if down, back := strings.Count(s.log.String(), "cannot be read"), strings.Count(s.log.String(), "are read"); down != 4 || back != 5 {
		t.Errorf("%d down and %d up log lines, want 4 and 5 (once per change):\n%s", down, back, s.log.String())
	}
}

func TestEnvoyStatsURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:15000/stats/prometheus", "unix:///var/run/envoy.sock", "http:///stats"} {
		if _, err := admin.NewEnvoyStats(u, prometheus.NewRegistry(), slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
}

// TestEnvoyStatsShared: scrapes that come while a fetch of Envoy's statistics is under way share
// it: Envoy renders them once for all of them.
func TestEnvoyStatsShared(t *testing.T) {
	var fetches atomic.Int32
	release := make(chan struct{})
	envoy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		<-release
		io.WriteString(w, envoyText)
	}))
	t.Cleanup(envoy.Close)
	s := newScrapeSetup(t, envoy.URL+"/stats/prometheus")
	const scrapes = 8
	var wg sync.WaitGroup
	var arrived atomic.Int32
	gather := s.stats.Gatherer(prometheus.NewRegistry())
	for range scrapes {
		wg.Go(func() {
			arrived.Add(1)
			gather.Gather()
		})
	}
	// every scrape has started and the first fetch waits in Envoy: the others join it
	for fetches.Load() == 0 || arrived.Load() < scrapes {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if n := fetches.Load(); n >= scrapes {
		t.Errorf("%d fetches of Envoy's statistics for %d concurrent scrapes, want them shared", n, scrapes)
	}
}
