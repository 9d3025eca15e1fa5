package dataplane

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc/stats"
)

// Stats are the few statistics the double keeps, under the names Envoy gives them (Envoy's docs:
// configuration/http/http_conn_man/stats, configuration/upstream/cluster_manager/cluster_stats):
//
//	http.<stat_prefix>.downstream_rq_total   a request began (ActiveStream's constructor)
//	http.<stat_prefix>.downstream_rq_<N>xx   response headers of class N were sent (chargeStats)
//	cluster.<name>.upstream_rq_total         an upstream request was attached to a connection
//	                                         (ConnPoolImplBase::attachStreamToClient): not one
//	                                         that overflowed or found no connection
//
// for every HTTP connection manager (the listeners' stat_prefix, and the admin listener's
// "admin") and every cluster, from 0 as Envoy creates them with the listener or cluster.
// Prometheus renders them as Envoy's admin /stats/prometheus does.
type Stats struct {
	mu       sync.Mutex
	counters map[string]uint64
}

func newStats() *Stats { return &Stats{counters: map[string]uint64{}} }

func (s *Stats) inc(name string) {
	s.mu.Lock()
	s.counters[name]++
	s.mu.Unlock()
}

// DownstreamRequest counts a request of the connection manager with stat_prefix prefix.
func (s *Stats) DownstreamRequest(prefix string) { s.inc("http." + prefix + ".downstream_rq_total") }

// DownstreamResponse counts the response headers, of status code, of a request of prefix's.
func (s *Stats) DownstreamResponse(prefix string, code int) {
	if code >= 100 && code < 600 {
		s.inc("http." + prefix + ".downstream_rq_" + strconv.Itoa(code/100) + "xx")
	}
}

// LocalRateLimit counts a local rate limit filter's counter (enabled, ok, rate_limited,
// enforced) of a config of stat_prefix prefix.
func (s *Stats) LocalRateLimit(prefix, counter string) {
	s.inc(prefix + ".http_local_rate_limit." + counter)
}

// upstreamRequest counts a request attached to a connection of the cluster whose StatName is
// statName.
func (s *Stats) upstreamRequest(statName string) {
	s.inc("cluster." + statName + ".upstream_rq_total")
}

// grpcStats counts the streams of a gRPC cluster (ext_proc, xDS) as upstream requests once
// their headers go out on a connection: Envoy's gRPC clients send each stream as a request of
// the cluster's HTTP/2 pool.
type grpcStats struct {
	s        *Stats
	statName string
}

// GRPCHandler counts the streams of a gRPC client of the cluster whose StatName is statName.
func (s *Stats) GRPCHandler(statName string) stats.Handler {
	return grpcStats{s: s, statName: statName}
}

func (g grpcStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (g grpcStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (g grpcStats) HandleConn(context.Context, stats.ConnStats)                       {}
func (g grpcStats) HandleRPC(_ context.Context, st stats.RPCStats) {
	if h, ok := st.(*stats.OutHeader); ok && h.Client {
		g.s.upstreamRequest(g.statName)
	}
}

// responseCounter counts the status of a response of the connection manager prefix.
type responseCounter struct {
	http.ResponseWriter
	s      *Stats
	prefix string
	done   bool
}

func (w *responseCounter) WriteHeader(code int) {
	if !w.done && code >= 200 {
		w.done = true
		w.s.DownstreamResponse(w.prefix, code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseCounter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Count serves h as a connection manager of stat_prefix prefix, counting its requests and
// responses (the admin listener's is "admin").
func (s *Stats) Count(prefix string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.DownstreamRequest(prefix)
		h.ServeHTTP(&responseCounter{ResponseWriter: w, s: s, prefix: prefix}, r)
	})
}

// Stats are the server's statistics.
func (s *Server) Stats() *Stats { return s.stats }

// WritePrometheus writes the statistics of the active configuration's connection managers (and
// the admin's, adminPrefix) and clusters as Envoy's /stats/prometheus does
// (PrometheusStatsFormatter): each stat's tags taken out of its name by Envoy's default tag
// extractors, families sorted by name with a "# TYPE" line and no HELP, their samples sorted by
// stat name, a blank line after each family.
func (s *Server) WritePrometheus(w io.Writer, adminPrefix string) {
	snap := s.Snapshot()
	prefixes := []string{adminPrefix}
	for _, l := range snap.Listeners {
		prefixes = append(prefixes, l.HCM.StatPrefix)
	}
	var names []string
	for _, p := range prefixes {
		names = append(names, "http."+p+".downstream_rq_total")
		for class := 1; class <= 5; class++ {
			names = append(names, fmt.Sprintf("http.%s.downstream_rq_%dxx", p, class))
		}
	}
	for _, c := range snap.Clusters {
		names = append(names, "cluster."+c.StatName+".upstream_rq_total")
	}
	// Envoy makes a local rate limit config's counters with the config: the filter-level
	// config's with the listener (mcpgate's per-route configs share its stat_prefix), the
	// others' as they count (a per-route config's stat_prefix of its own shows once used).
	for _, l := range snap.Listeners {
		if rl := l.HCM.RateLimit; rl != nil {
			for _, c := range rateLimitCounters {
				names = append(names, rl.StatPrefix+".http_local_rate_limit."+c)
			}
		}
	}
	s.stats.mu.Lock()
	for n := range s.stats.counters {
		if strings.Contains(n, ".http_local_rate_limit.") {
			names = append(names, n)
		}
	}
	s.stats.mu.Unlock()
	slices.Sort(names)
	names = slices.Compact(names)     // listeners may share a stat_prefix, and its statistics
	families := map[string][]string{} // family → its sample lines
	s.stats.mu.Lock()
	for _, n := range names {
		family, labels := tagExtract(n)
		families[family] = append(families[family], fmt.Sprintf("%s{%s} %d\n", family, labels, s.stats.counters[n]))
	}
	s.stats.mu.Unlock()
	order := make([]string, 0, len(families))
	for f := range families {
		order = append(order, f)
	}
	slices.Sort(order)
	for _, f := range order {
		fmt.Fprintf(w, "# TYPE %s counter\n", f)
		for _, line := range families[f] {
			io.WriteString(w, line)
		}
		io.WriteString(w, "\n")
	}
}

// rateLimitCounters are the local rate limit filter's counters (ALL_LOCAL_RATE_LIMIT_STATS).
var rateLimitCounters = []string{"enabled", "enforced", "ok", "rate_limited"}

var (
	// Envoy's default tag extractors that the double's stats meet (well_known_names.cc), in
	// its order: the first group is taken out of the name, the second is the tag's value.
	codeClassTag = regexp.MustCompile(`_rq_(\d)xx$`)
	clusterTag   = regexp.MustCompile(`^cluster\.(([^.]+)\.)`)
	hcmTag       = regexp.MustCompile(`^http\.((.*?)\.)`)
	// localRateLimitTag is LOCAL_HTTP_RATELIMIT_PREFIX, "$.http_local_rate_limit.**"
	localRateLimitTag = regexp.MustCompile(`^(([^.]+)\.)http_local_rate_limit\.`)
	notPromName       = regexp.MustCompile(`[^a-zA-Z0-9_]`)
)

// tagExtract returns the Prometheus family of a stat name and its labels as Envoy writes them:
// the tags the extractors take out, then "envoy_" and the rest with every character Prometheus
// does not allow in a name made "_". A cluster name with a dot thus keeps only its first part as
// the tag, the rest in the name, as in Envoy (which alt_stat_name avoids).
func tagExtract(stat string) (family, labels string) {
	var tags []string
	for _, x := range []struct {
		re  *regexp.Regexp
		tag string
	}{{codeClassTag, "envoy_response_code_class"}, {clusterTag, "envoy_cluster_name"}, {hcmTag, "envoy_http_conn_manager_prefix"},
		{localRateLimitTag, "envoy_local_http_ratelimit_prefix"}} {
		m := x.re.FindStringSubmatchIndex(stat)
		if m == nil {
			continue
		}
		value := stat[m[2]:m[3]]
		if len(m) > 4 {
			value = stat[m[4]:m[5]]
		}
		tags = append(tags, fmt.Sprintf(`%s="%s"`, x.tag, escapeLabel(value)))
		stat = stat[:m[2]] + stat[m[3]:]
	}
	return "envoy_" + notPromName.ReplaceAllString(stat, "_"), strings.Join(tags, ",")
}

// escapeLabel escapes a tag value as Envoy's sanitizeValue does.
func escapeLabel(v string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(v)
}
