package admin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// Defaults of EnvoyStats.
const (
	// DefaultEnvoyStatsTimeout bounds each fetch: Envoy's admin listener is on the pod's loopback
	// and answers in milliseconds; a scrape must not wait for a stuck one.
	DefaultEnvoyStatsTimeout = 3 * time.Second
	// DefaultEnvoyStatsMaxBytes bounds the body read: Envoy writes a few hundred lines per
	// cluster, so this is thousands of clusters, and a larger body is refused, not truncated.
	DefaultEnvoyStatsMaxBytes = 16 << 20
)

// EnvoySource is an Envoy whose statistics EnvoyStats reads.
type EnvoySource struct {
	// Gateway is the Gateway the Envoy serves, NS/NAME: the label gateway added to each of its
	// samples, and that of its mcpgate_envoy_stats_up. "" adds no label to its samples (and
	// gateway="" to its mcpgate_envoy_stats_up): for the one Envoy of a process that serves every
	// Gateway, its only source.
	Gateway string
	// URL is its admin endpoint's /stats/prometheus, http://HOST:PORT/stats/prometheus.
	URL string
}

// EnvoyStats adds the statistics of Envoys, read from each one's admin endpoint /stats/prometheus
// at each scrape, to a process's own metrics (Gatherer), and exports whether it could read them
// as the gauge mcpgate_envoy_stats_up{gateway} (1 or 0), one per Envoy.
//
// Envoy's endpoint writes the Prometheus text format 0.0.4: a "# TYPE" line per family (no
// HELP), its samples, counters and gauges as name{tags} value, histograms as _bucket{le=...},
// _sum and _count, all names prefixed envoy_ (Envoy's PrometheusStatsFormatter). Its families are
// parsed (expfmt) and returned next to the process's own rather than its text appended to theirs:
// what /metrics serves is then one valid exposition in whatever format the scraper negotiates
// (text, protobuf), with one TYPE line per family even should a name be in both (the process's
// family is kept, Envoy's dropped and logged), and a body Envoy cut short or garbled never
// spoils the process's own metrics. The names pass through as Envoy writes them (OpenMetrics is
// not offered, which would append _total to its counters that lack it, such as
// envoy_http_downstream_rq_xx).
//
// Each sample of an Envoy whose source names a Gateway carries the label gateway="NS/NAME", so
// that the families of several Envoys (`mcpgate run`'s, one per Gateway) merge into one family
// each, without two series of the same labels. A family of an Envoy's that has a gateway label
// of its own (a stats tag so named), or that is of another type than another Envoy's of the same
// name, is left out and logged.
type EnvoyStats struct {
	sources func() []EnvoySource
	// Timeout bounds each fetch; MaxBytes the body (a larger one is refused). Set them before the
	// first Gather, if at all.
	Timeout  time.Duration
	MaxBytes int64

	log    *slog.Logger
	client *http.Client
	up     *prometheus.Desc

	mu       sync.Mutex
	inflight *flight // the fetch under way, which concurrent scrapes share
	// last is the result of the last fetch, which mcpgate_envoy_stats_up reports.
	last []fetched
	// state is what was logged of each current source.
	state map[EnvoySource]*sourceState
}

// sourceState is what was logged of a source.
type sourceState struct {
	known   bool            // state was reported once
	reached bool            // the last fetch succeeded
	leftOut map[string]bool // families of the source's left out, logged once each
}

// NewEnvoyStats reads the statistics of one Envoy, that of Gateway gateway ("" for none, see
// EnvoySource), from rawURL (http://127.0.0.1:15000/stats/prometheus) and registers
// mcpgate_envoy_stats_up with reg. log tells when Envoy stops or starts answering, once per
// change.
func NewEnvoyStats(rawURL, gateway string, reg prometheus.Registerer, log *slog.Logger) (*EnvoyStats, error) {
	if err := CheckEnvoyStatsURL(rawURL); err != nil {
		return nil, err
	}
	one := []EnvoySource{{Gateway: gateway, URL: rawURL}}
	return NewEnvoyStatsOf(func() []EnvoySource { return one }, reg, log)
}

// NewEnvoyStatsOf reads the statistics of the Envoys sources returns at each scrape (the
// current ones, which may come and go; each source's Gateway is unique and not ""), and
// registers mcpgate_envoy_stats_up with reg. sources is called concurrently with whatever
// changes them: it returns a copy of its own.
func NewEnvoyStatsOf(sources func() []EnvoySource, reg prometheus.Registerer, log *slog.Logger) (*EnvoyStats, error) {
	e := &EnvoyStats{sources: sources, Timeout: DefaultEnvoyStatsTimeout, MaxBytes: DefaultEnvoyStatsMaxBytes, log: log,
		// Envoy's admin is on the host or in the pod: no proxy from the environment, one
		// connection kept per Envoy.
		client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, DisableCompression: true},
			// Envoy's admin never redirects: an answer that does is not its statistics.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		up: prometheus.NewDesc("mcpgate_envoy_stats_up",
			"1 when the last scrape read the statistics of the Envoy of Gateway gateway from its admin endpoint, 0 when it could not (they are missing from that scrape); "+
				`gateway is "" for the one Envoy of mcpgate extproc --gateway '*'`, []string{"gateway"}, nil),
		state: map[EnvoySource]*sourceState{}}
	if err := reg.Register(upCollector{e}); err != nil {
		return nil, err
	}
	return e, nil
}

// upCollector exports mcpgate_envoy_stats_up of the sources of the last fetch.
type upCollector struct{ e *EnvoyStats }

func (c upCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.e.up }

func (c upCollector) Collect(ch chan<- prometheus.Metric) {
	c.e.mu.Lock()
	last := c.e.last
	c.e.mu.Unlock()
	for _, f := range last {
		v := 0.0
		if f.err == nil {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.e.up, prometheus.GaugeValue, v, f.src.Gateway)
	}
}

// CheckEnvoyStatsURL says what is wrong with the URL of Envoy's /stats/prometheus, if anything.
func CheckEnvoyStatsURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err == nil && ((u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		err = errors.New("want http://HOST:PORT/PATH (Envoy's admin /stats/prometheus)")
	}
	if err != nil {
		return fmt.Errorf("Envoy stats URL %q: %w", rawURL, err)
	}
	return nil
}

// Gatherer returns a prometheus.Gatherer of own's families followed by the Envoys', read at each
// Gather. Only own's error is returned: when an Envoy cannot be read, its samples are missing and
// its mcpgate_envoy_stats_up (among own's, when registered with the same registry) is 0.
func (e *EnvoyStats) Gatherer(own prometheus.Gatherer) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		results := e.shared()
		e.report(results)
		mfs, ownErr := own.Gather()
		have := make(map[string]bool, len(mfs))
		for _, mf := range mfs {
			have[mf.GetName()] = true
		}
		// The families of the Envoys, each merged from theirs; a family that only one Envoy has
		// is served as fetched (fetched families are shared by concurrent scrapes: read only).
		merged := map[string]*dto.MetricFamily{}
		var names []string
		for _, r := range results {
			for _, name := range r.leftOut {
				e.leftOut(r.src, name, "it has a label gateway of its own")
			}
			for _, mf := range r.mfs {
				name := mf.GetName()
				m := merged[name]
				switch {
				case have[name]:
					e.leftOut(r.src, name, "mcpgate has a family of that name")
				case m == nil:
					merged[name] = mf
					names = append(names, name)
				case m.GetType() != mf.GetType():
					e.leftOut(r.src, name, "another Envoy's family of that name is of another type")
				default:
					merged[name] = &dto.MetricFamily{Name: m.Name, Help: m.Help, Type: m.Type, Unit: m.Unit,
						Metric: append(slices.Clip(m.GetMetric()), mf.GetMetric()...)}
				}
			}
		}
		slices.Sort(names)
		for _, name := range names {
			mfs = append(mfs, merged[name])
		}
		return mfs, ownErr
	})
}

// fetched is the statistics of one source: its families, sorted by name and labelled with its
// Gateway, and those it left out (leftOut, for a label gateway of their own); or why they
// could not be read.
type fetched struct {
	src     EnvoySource
	mfs     []*dto.MetricFamily
	leftOut []string
	err     error
}

// flight is one fetch of the Envoys' statistics and its result, ready once done is closed.
type flight struct {
	done    chan struct{}
	results []fetched
}

// shared returns the result of a fetch: the one under way if there is one, else a new one. However
// many scrapes come at once, each Envoy renders its statistics (on its main thread, which also
// serves xDS) once for them, and the process holds one copy; the families are only read
// afterwards.
func (e *EnvoyStats) shared() []fetched {
	e.mu.Lock()
	if f := e.inflight; f != nil {
		e.mu.Unlock()
		<-f.done
		return f.results
	}
	f := &flight{done: make(chan struct{})}
	e.inflight = f
	e.mu.Unlock()
	f.results = e.fetchAll(e.sources())
	e.mu.Lock()
	e.inflight = nil
	e.last = f.results
	e.mu.Unlock()
	close(f.done)
	return f.results
}

// fetchAll reads the statistics of srcs at once, ordered by Gateway.
func (e *EnvoyStats) fetchAll(srcs []EnvoySource) []fetched {
	srcs = slices.Clone(srcs)
	slices.SortFunc(srcs, func(a, b EnvoySource) int { return strings.Compare(a.Gateway, b.Gateway) })
	results := make([]fetched, len(srcs))
	var wg sync.WaitGroup
	for i, src := range srcs {
		wg.Go(func() {
			r := fetched{src: src}
			r.mfs, r.leftOut, r.err = e.fetch(src)
			results[i] = r
		})
	}
	wg.Wait()
	return results
}

// fetch reads and parses the statistics of src, sorted by family name, and labels them with its
// Gateway; it returns the names of the families it left out for a label gateway of their own.
func (e *EnvoyStats) fetch(src EnvoySource) ([]*dto.MetricFamily, []string, error) {
	client := *e.client
	client.Timeout = e.Timeout
	req, err := http.NewRequest(http.MethodGet, src.URL, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, e.MaxBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", src.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s answered %s: %s", src.URL, resp.Status, firstLine(body))
	}
	if int64(len(body)) > e.MaxBytes {
		return nil, nil, fmt.Errorf("%s: the body is larger than %d bytes", src.URL, e.MaxBytes)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not the Prometheus text format: %w", src.URL, err)
	}
	mfs := make([]*dto.MetricFamily, 0, len(byName))
	var leftOut []string
	for name, mf := range byName {
		if src.Gateway != "" && !labelGateway(mf, src.Gateway) {
			leftOut = append(leftOut, name)
			continue
		}
		mfs = append(mfs, mf)
	}
	slices.SortFunc(mfs, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	slices.Sort(leftOut)
	return mfs, leftOut, nil
}

// gatewayLabel is the label of an Envoy's samples that names its Gateway.
const gatewayLabel = "gateway"

// labelGateway adds the label gateway="gw" to every sample of mf, in label name order; false
// when one has a label gateway already (mf is then left as it was).
func labelGateway(mf *dto.MetricFamily, gw string) bool {
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == gatewayLabel {
				return false
			}
		}
	}
	for _, m := range mf.GetMetric() {
		m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(gatewayLabel), Value: proto.String(gw)})
		slices.SortFunc(m.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
	}
	return true
}

// report logs, for each source, when its statistics start or stop being read, and forgets the
// sources that are gone.
func (e *EnvoyStats) report(results []fetched) {
	e.mu.Lock()
	defer e.mu.Unlock()
	current := make(map[EnvoySource]bool, len(results))
	for _, r := range results {
		current[r.src] = true
		st := e.state[r.src]
		if st == nil {
			st = &sourceState{leftOut: map[string]bool{}}
			e.state[r.src] = st
		}
		reached := r.err == nil
		if st.known && st.reached == reached {
			continue
		}
		st.known, st.reached = true, reached
		if reached {
			e.log.Info("Envoy's statistics are read: /metrics serves them after mcpgate's", sourceAttrs(r.src)...)
			continue
		}
		e.log.Warn("Envoy's statistics cannot be read: /metrics serves mcpgate's only (mcpgate_envoy_stats_up 0) until they can",
			append(sourceAttrs(r.src), "error", r.err)...)
	}
	// A flight older than the current sources may report one that is gone: its state comes back
	// at its next scrape, and is logged once more at worst.
	for src := range e.state {
		if !current[src] {
			delete(e.state, src)
		}
	}
}

// leftOut logs, once per source and name, a family of the source's left out, and why.
func (e *EnvoyStats) leftOut(src EnvoySource, name, why string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.state[src]
	if st == nil || st.leftOut[name] {
		return
	}
	st.leftOut[name] = true
	e.log.Warn("a family of Envoy's statistics is left out: "+why, append(sourceAttrs(src), "family", name)...)
}

// sourceAttrs are the log attributes that name src.
func sourceAttrs(src EnvoySource) []any {
	if src.Gateway == "" {
		return []any{"url", src.URL}
	}
	return []any{"gateway", src.Gateway, "url", src.URL}
}

// firstLine is the start of an error body, for a log line.
func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if len(line) > 200 {
		line = line[:200]
	}
	return strings.TrimSpace(string(line))
}
