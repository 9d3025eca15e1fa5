package admin_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
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
	return newScrapeSetupOf(t, func(reg prometheus.Registerer, log *slog.Logger) (*admin.EnvoyStats, error) {
		return admin.NewEnvoyStats(url, "", reg, log)
	})
}

// newScrapeSetupOf is newScrapeSetup with the EnvoyStats that newStats makes.
func newScrapeSetupOf(t *testing.T, newStats func(prometheus.Registerer, *slog.Logger) (*admin.EnvoyStats, error)) *scrapeSetup {
	t.Helper()
	reg := prometheus.NewRegistry()
	own := prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpgate_test_total", Help: "mcpgate's own"})
	own.Add(3)
	reg.MustRegister(own)
	var log bytes.Buffer
	stats, err := newStats(reg, slog.New(slog.NewTextHandler(&log, nil)))
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
	series := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			sample := line[:strings.LastIndexByte(line, ' ')]
			if series[sample] {
				s.t.Errorf("/metrics has the series %s twice:\n%s", sample, b)
			}
			series[sample] = true
		}
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
// pairs labels, and whether it is there. A label of value "" is no label, as for Prometheus.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			if lp.GetValue() != "" {
				have[lp.GetName()] = lp.GetValue()
			}
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
		if _, err := admin.NewEnvoyStats(u, "", prometheus.NewRegistry(), slog.New(slog.DiscardHandler)); err == nil {
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

// sourceSet is the sources of several Envoys, changed while scrapes read it.
type sourceSet struct {
	mu   sync.Mutex
	srcs []admin.EnvoySource
}

func (s *sourceSet) set(srcs ...admin.EnvoySource) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srcs = srcs
}

func (s *sourceSet) get() []admin.EnvoySource {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.srcs)
}

func newScrapeSetupOfSet(t *testing.T, set *sourceSet) *scrapeSetup {
	t.Helper()
	return newScrapeSetupOf(t, func(reg prometheus.Registerer, log *slog.Logger) (*admin.EnvoyStats, error) {
		return admin.NewEnvoyStatsOf(set.get, reg, log)
	})
}

// samples returns the label sets (name=value, sorted, joined by ",") of the samples of family name.
func samples(mfs map[string]*dto.MetricFamily, name string) []string {
	var out []string
	for _, m := range mfs[name].GetMetric() {
		var labels []string
		for _, lp := range m.GetLabel() {
			labels = append(labels, lp.GetName()+"="+lp.GetValue())
		}
		slices.Sort(labels)
		out = append(out, strings.Join(labels, ","))
	}
	slices.Sort(out)
	return out
}

// TestEnvoyStatsGateways: the statistics of several Envoys, each labelled with its Gateway, merge
// into one family per name without a series twice, each Envoy with its mcpgate_envoy_stats_up;
// one that cannot be read is missing with its up 0 while the others are served, and the
// sources follow the set as Envoys come and go.
func TestEnvoyStatsGateways(t *testing.T) {
	a, b, c := newEnvoyDouble(t, envoyText), newEnvoyDouble(t, envoyText), newEnvoyDouble(t, envoyText)
	srcA, srcB, srcC := admin.EnvoySource{Gateway: "ns/a", URL: a.url()}, admin.EnvoySource{Gateway: "ns/b", URL: b.url()}, admin.EnvoySource{Gateway: "ns/c", URL: c.url()}
	set := &sourceSet{}
	set.set(srcA, srcB)
	s := newScrapeSetupOfSet(t, set)
	up := func(mfs map[string]*dto.MetricFamily, want map[string]float64) {
		t.Helper()
		if got := len(mfs["mcpgate_envoy_stats_up"].GetMetric()); got != len(want) {
			t.Errorf("%d mcpgate_envoy_stats_up series, want %d: %v", got, len(want), samples(mfs, "mcpgate_envoy_stats_up"))
		}
		for gw, w := range want {
			if v, ok := value(mfs, "mcpgate_envoy_stats_up", "gateway", gw); !ok || v != w {
				t.Errorf("mcpgate_envoy_stats_up{gateway=%q} = %v (%t), want %v", gw, v, ok, w)
			}
		}
	}

	text, mfs := s.scrape()
	up(mfs, map[string]float64{"ns/a": 1, "ns/b": 1})
	for _, gw := range []string{"ns/a", "ns/b"} {
		if v, ok := value(mfs, "envoy_cluster_upstream_rq_total", "envoy_cluster_name", "everything", "gateway", gw); !ok || v != 7 {
			t.Errorf("envoy_cluster_upstream_rq_total{envoy_cluster_name=everything,gateway=%s} = %v (%t), want 7:\n%s", gw, v, ok, text)
		}
		if v, ok := value(mfs, "envoy_server_live", "gateway", gw); !ok || v != 1 {
			t.Errorf("envoy_server_live{gateway=%s} = %v (%t), want 1", gw, v, ok)
		}
	}
	if got, want := samples(mfs, "envoy_http_downstream_rq_time"), []string{
		"envoy_http_conn_manager_prefix=gw_http,gateway=ns/a", "envoy_http_conn_manager_prefix=gw_http,gateway=ns/b"}; !slices.Equal(got, want) {
		t.Errorf("envoy_http_downstream_rq_time samples %q, want %q", got, want)
	}
	if v, ok := value(mfs, "mcpgate_test_total"); !ok || v != 3 {
		t.Errorf("mcpgate_test_total = %v (%t), want 3", v, ok)
	}

	// b cannot be read: a's are served
	b.status.Store(http.StatusServiceUnavailable)
	_, mfs = s.scrape()
	up(mfs, map[string]float64{"ns/a": 1, "ns/b": 0})
	if got, want := samples(mfs, "envoy_cluster_upstream_rq_total"), []string{
		"envoy_cluster_name=everything,gateway=ns/a", "envoy_cluster_name=xds_cluster,gateway=ns/a"}; !slices.Equal(got, want) {
		t.Errorf("with ns/b down, envoy_cluster_upstream_rq_total samples %q, want %q", got, want)
	}
	if !strings.Contains(s.log.String(), "gateway=ns/b") || strings.Count(s.log.String(), "cannot be read") != 1 {
		t.Errorf("want one log line that ns/b cannot be read:\n%s", s.log.String())
	}

	// b goes, c comes
	set.set(srcC, srcA)
	_, mfs = s.scrape()
	up(mfs, map[string]float64{"ns/a": 1, "ns/c": 1})
	if got, want := samples(mfs, "envoy_server_live"), []string{"gateway=ns/a", "gateway=ns/c"}; !slices.Equal(got, want) {
		t.Errorf("after ns/b went and ns/c came, envoy_server_live samples %q, want %q", got, want)
	}

	// none: mcpgate's only
	set.set()
	_, mfs = s.scrape()
	for name := range mfs {
		if name != "mcpgate_test_total" {
			t.Errorf("without Envoys, /metrics serves %s", name)
		}
	}
}

// TestEnvoyStatsOneGateway: the statistics of one Envoy whose source names its Gateway (the
// Kubernetes sidecar's, --gateway) carry its label; without (""), none.
func TestEnvoyStatsOneGateway(t *testing.T) {
	envoy := newEnvoyDouble(t, envoyText)
	for _, gw := range []string{"ns/gw", ""} {
		s := newScrapeSetupOf(t, func(reg prometheus.Registerer, log *slog.Logger) (*admin.EnvoyStats, error) {
			return admin.NewEnvoyStats(envoy.url(), gw, reg, log)
		})
		_, mfs := s.scrape()
		want := []string{"envoy_cluster_name=everything,gateway=" + gw, "envoy_cluster_name=xds_cluster,gateway=" + gw}
		if gw == "" {
			want = []string{"envoy_cluster_name=everything", "envoy_cluster_name=xds_cluster"}
		}
		if got := samples(mfs, "envoy_cluster_upstream_rq_total"); !slices.Equal(got, want) {
			t.Errorf("gateway %q: envoy_cluster_upstream_rq_total samples %q, want %q", gw, got, want)
		}
		labels := []string{"gateway", gw}
		if gw == "" {
			labels = nil
		}
		if v, ok := value(mfs, "mcpgate_envoy_stats_up", labels...); !ok || v != 1 {
			t.Errorf("gateway %q: mcpgate_envoy_stats_up = %v (%t), want 1", gw, v, ok)
		}
	}
}

// TestEnvoyStatsGatewaysLeftOut: a family of an Envoy's with a label gateway of its own (a stats
// tag so named), or of another type than another Envoy's of that name, is left out and logged
// once; the rest of that Envoy's is served.
func TestEnvoyStatsGatewaysLeftOut(t *testing.T) {
	a := newEnvoyDouble(t, envoyText)
	b := newEnvoyDouble(t, envoyText+"# TYPE envoy_tagged counter\nenvoy_tagged{gateway=\"mine\"} 1\n\n")
	c := newEnvoyDouble(t, strings.Replace(envoyText, "# TYPE envoy_server_live gauge", "# TYPE envoy_server_live counter", 1))
	set := &sourceSet{}
	set.set(admin.EnvoySource{Gateway: "ns/a", URL: a.url()}, admin.EnvoySource{Gateway: "ns/b", URL: b.url()}, admin.EnvoySource{Gateway: "ns/c", URL: c.url()})
	s := newScrapeSetupOfSet(t, set)
	for range 2 {
		_, mfs := s.scrape()
		if mfs["envoy_tagged"] != nil {
			t.Errorf("envoy_tagged, with a label gateway of its own, is served: %v", samples(mfs, "envoy_tagged"))
		}
		if got, want := samples(mfs, "envoy_server_live"), []string{"gateway=ns/a", "gateway=ns/b"}; !slices.Equal(got, want) || mfs["envoy_server_live"].GetType() != dto.MetricType_GAUGE {
			t.Errorf("envoy_server_live samples %q of type %s, want %q, a gauge (ns/c's counter left out)", got, mfs["envoy_server_live"].GetType(), want)
		}
		if got := samples(mfs, "envoy_cluster_upstream_rq_total"); len(got) != 6 {
			t.Errorf("envoy_cluster_upstream_rq_total samples %q, want 2 of each Envoy", got)
		}
	}
	log := s.log.String()
	for _, want := range []string{"gateway=ns/b url=" + b.url() + " family=envoy_tagged", "gateway=ns/c url=" + c.url() + " family=envoy_server_live"} {
		if n := strings.Count(log, want); n != 1 {
			t.Errorf("%d log lines with %q, want 1:\n%s", n, want, log)
		}
	}
}
