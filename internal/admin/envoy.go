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

// EnvoyStats adds an Envoy's statistics, read from its admin endpoint /stats/prometheus at each
// scrape, to a process's own metrics (Gatherer), and exports whether it could read them as the
// gauge mcpgate_envoy_stats_up (1 or 0).
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
type EnvoyStats struct {
	url string
	// Timeout bounds each fetch; MaxBytes the body (a larger one is refused). Set them before the
	// first Gather, if at all.
	Timeout  time.Duration
	MaxBytes int64

	log    *slog.Logger
	client *http.Client
	up     prometheus.Gauge

	mu       sync.Mutex
	inflight *flight         // the fetch under way, which concurrent scrapes share
	known    bool            // state was reported once
	reached  bool            // the last fetch succeeded
	clashes  map[string]bool // families of Envoy's dropped for a name of the process's, logged once
}

// NewEnvoyStats reads Envoy's statistics from rawURL (http://127.0.0.1:15000/stats/prometheus)
// and registers mcpgate_envoy_stats_up with reg. log tells when Envoy stops or starts answering,
// once per change.
func NewEnvoyStats(rawURL string, reg prometheus.Registerer, log *slog.Logger) (*EnvoyStats, error) {
	if err := CheckEnvoyStatsURL(rawURL); err != nil {
		return nil, err
	}
	e := &EnvoyStats{url: rawURL, Timeout: DefaultEnvoyStatsTimeout, MaxBytes: DefaultEnvoyStatsMaxBytes, log: log,
		// Envoy's admin is in the pod: no proxy from the environment, one connection kept.
		client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, DisableCompression: true},
			// Envoy's admin never redirects: an answer that does is not its statistics.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		up: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mcpgate_envoy_stats_up",
			Help: "1 when the last scrape read Envoy's statistics from its admin endpoint (--envoy-stats-url), 0 when it could not (they are missing from that scrape)"}),
		clashes: map[string]bool{}}
	if err := reg.Register(e.up); err != nil {
		return nil, err
	}
	return e, nil
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

// Gatherer returns a prometheus.Gatherer of own's families followed by Envoy's, read at each
// Gather. Only own's error is returned: when Envoy cannot be read, its families are missing and
// mcpgate_envoy_stats_up (among own's, when registered with the same registry) is 0.
func (e *EnvoyStats) Gatherer(own prometheus.Gatherer) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		envoy, err := e.shared()
		e.report(err)
		mfs, ownErr := own.Gather()
		have := make(map[string]bool, len(mfs))
		for _, mf := range mfs {
			have[mf.GetName()] = true
		}
		for _, mf := range envoy {
			if have[mf.GetName()] {
				e.clash(mf.GetName())
				continue
			}
			mfs = append(mfs, mf)
		}
		return mfs, ownErr
	})
}

// flight is one fetch of Envoy's statistics and its result, ready once done is closed.
type flight struct {
	done chan struct{}
	mfs  []*dto.MetricFamily
	err  error
}

// shared returns the result of a fetch: the one under way if there is one, else a new one. However
// many scrapes come at once, Envoy renders its statistics (on its main thread, which also serves
// xDS) once for them, and the sidecar holds one copy; the families are only read afterwards.
func (e *EnvoyStats) shared() ([]*dto.MetricFamily, error) {
	e.mu.Lock()
	if f := e.inflight; f != nil {
		e.mu.Unlock()
		<-f.done
		return f.mfs, f.err
	}
	f := &flight{done: make(chan struct{})}
	e.inflight = f
	e.mu.Unlock()
	f.mfs, f.err = e.fetch()
	e.mu.Lock()
	e.inflight = nil
	e.mu.Unlock()
	close(f.done)
	return f.mfs, f.err
}

// fetch reads and parses Envoy's statistics, sorted by family name.
func (e *EnvoyStats) fetch() ([]*dto.MetricFamily, error) {
	client := *e.client
	client.Timeout = e.Timeout
	req, err := http.NewRequest(http.MethodGet, e.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, e.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", e.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s: %s", e.url, resp.Status, firstLine(body))
	}
	if int64(len(body)) > e.MaxBytes {
		return nil, fmt.Errorf("%s: the body is larger than %d bytes", e.url, e.MaxBytes)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: not the Prometheus text format: %w", e.url, err)
	}
	mfs := make([]*dto.MetricFamily, 0, len(byName))
	for _, mf := range byName {
		mfs = append(mfs, mf)
	}
	slices.SortFunc(mfs, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return mfs, nil
}

// report sets mcpgate_envoy_stats_up after a fetch and logs when it changes.
func (e *EnvoyStats) report(err error) {
	if err == nil {
		e.up.Set(1)
	} else {
		e.up.Set(0)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	reached := err == nil
	if e.known && e.reached == reached {
		return
	}
	e.known, e.reached = true, reached
	if reached {
		e.log.Info("Envoy's statistics are read: /metrics serves them after mcpgate's", "url", e.url)
		return
	}
	e.log.Warn("Envoy's statistics cannot be read: /metrics serves mcpgate's only (mcpgate_envoy_stats_up 0) until they can", "url", e.url, "error", err)
}

// clash logs, once per name, a family of Envoy's dropped for the process's of the same name.
func (e *EnvoyStats) clash(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.clashes[name] {
		return
	}
	e.clashes[name] = true
	e.log.Warn("Envoy's statistics have a family named as one of mcpgate's: Envoy's is left out", "family", name, "url", e.url)
}

// firstLine is the start of an error body, for a log line.
func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if len(line) > 200 {
		line = line[:200]
	}
	return strings.TrimSpace(string(line))
}
