package dataplane

// The local rate limit filter (envoy.filters.http.local_ratelimit), as Envoy runs it
// (source/extensions/filters/http/local_ratelimit/local_ratelimit.cc, Filter::decodeHeaders),
// right after the CORS filter:
//
//   - the config is the most specific per-route LocalRateLimit under the filter's name
//     (Http::Utility::resolveMostSpecificPerFilterConfig: weighted cluster, route, virtual host,
//     route configuration), else the filter's own, which the double only has without a bucket
//     and disabled; there is no merging. With no route there is no per-route config.
//   - not enabled (filter_enabled, unset: 0%): nothing. Else enabled is counted, one token is taken
//     from the config's bucket (xdsconf.TokenBucket, Envoy's AtomicTokenBucketImpl): taken, ok is
//     counted and the request goes on; none, rate_limited is counted, and when enforced
//     (filter_enforced) enforced too and the request is answered with sendLocalReply: 429
//     "local_rate_limited" (text/plain; the route's response header operations applied, as for
//     every local reply of a route entry), response flag RL, details "local_rate_limited". A
//     local reply goes through every encoder filter (sendLocalReplyViaFilterChain): ext_proc's
//     response processing (the route's mode, merged since its decodeHeaders never ran), the
//     stateful session filter and CORS. The filter adds no x-envoy-ratelimited header (the
//     global ratelimit filter does) and, without enable_x_ratelimit_headers (refused), no
//     x-ratelimit-* headers.
//
// Statistics: <stat_prefix>.http_local_rate_limit.{enabled,ok,rate_limited,enforced}, in the
// server's scope (no http.<prefix> in front).

import (
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

const (
	flagRateLimited = "RL"
	// rateLimitedBody is the body of the filter's 429.
	rateLimitedBody = "local_rate_limited"
)

// rateLimitDecode is the local rate limit filter's decodeHeaders; true when it answered 429.
func (st *stream) rateLimitDecode() bool {
	f := st.lis.HCM.RateLimit
	if f == nil || st.route == nil {
		return false // the filter-level config limits nothing
	}
	var cfg *xdsconf.LocalRateLimit
	levels := st.perFilterLevels()
	for i := len(levels) - 1; i >= 0 && cfg == nil; i-- {
		cfg = levels[i].RateLimit[f.Name]
	}
	if cfg == nil || !cfg.Enabled {
		return false
	}
	stats := st.srv.stats
	stats.LocalRateLimit(cfg.StatPrefix, "enabled")
	if cfg.Bucket.Consume() {
		stats.LocalRateLimit(cfg.StatPrefix, "ok")
		return false
	}
	stats.LocalRateLimit(cfg.StatPrefix, "rate_limited")
	if !cfg.Enforced {
		return false // request_headers_to_add_when_not_enforced is refused: nothing to add
	}
	stats.LocalRateLimit(cfg.StatPrefix, "enforced")
	st.localReply(429, []byte(rateLimitedBody), "local_rate_limited", flagRateLimited, false)
	return true
}
