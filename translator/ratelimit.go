package translator

import (
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
)

// localRateLimitFilterName is Envoy's local rate limit HTTP filter and the key of its per-route
// config. Every listener's chain has it (after CORS, before the stateful session filter and
// ext_proc; see newXDSCommon), whether or not its routes carry a LocalRateLimit: the filter-level
// config has no token bucket and is not enabled (filter_enabled unset: 0%), so only routes with a
// config of their own (route or weighted cluster) or of their RouteConfiguration (a Gateway-level
// limit) are limited (Envoy's resolveMostSpecificPerFilterConfig: the most specific per-filter
// config replaces the filter's, nothing merges).
const localRateLimitFilterName = "envoy.filters.http.local_ratelimit"

// rateLimitStatPrefix is the stat_prefix of every LocalRateLimit: Envoy counts
// <prefix>.http_local_rate_limit.{enabled,ok,rate_limited,enforced} over every limited route.
const rateLimitStatPrefix = "mcpgate_local_rate_limit"

// rateLimitFilter is the local rate limit filter of a listener's chain: it does nothing unless a
// route's per-route config enables it.
func rateLimitFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: localRateLimitFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{
		TypedConfig: mustAny(&localratelimitv3.LocalRateLimit{StatPrefix: rateLimitStatPrefix})}}
}

// rateLimitUnits are the fill intervals of the units.
var rateLimitUnits = map[v1alpha1.RateLimitUnit]time.Duration{
	v1alpha1.RateLimitUnitSeconds: time.Second,
	v1alpha1.RateLimitUnitMinutes: time.Minute,
	v1alpha1.RateLimitUnitHours:   time.Hour,
}

// translateRateLimit checks a policy's traffic.rateLimit (at field) and returns its per-route
// LocalRateLimit: a token bucket of requests + burst tokens that refills requests tokens per
// unit, enabled and enforced for every request. Envoy 1.34+ refills continuously
// (AtomicTokenBucketImpl: requests/unit tokens a second, the bucket starting full), not once per
// unit. One entry with requests is supported: Envoy's per-route config has one bucket; tokens
// (LLM token budgets) are refused. bad reports a refused field.
func translateRateLimit(rl *v1alpha1.RateLimitPolicy, field string, bad func(string, string)) *anypb.Any {
	lf := field + ".local"
	if len(rl.Local) == 0 {
		bad(lf, "at least one entry is required")
		return nil
	}
	var out *anypb.Any
	requests := 0
	for i, e := range rl.Local {
		f := lf + "[" + strconv.Itoa(i) + "]"
		ok := true
		switch {
		case e.Tokens != nil && e.Requests != nil:
			bad(f, "exactly one of requests and tokens must be set")
			ok = false
		case e.Tokens != nil:
			bad(f+".tokens", "LLM token budgets are not supported by mcpgate: it limits requests (Envoy's local rate limit filter); use requests")
			ok = false
		case e.Requests == nil:
			bad(f, "exactly one of requests and tokens must be set")
			ok = false
		case *e.Requests < 1:
			bad(f+".requests", strconv.Itoa(int(*e.Requests))+": must be at least 1")
			ok = false
		}
		burst := int64(0)
		if e.Burst != nil {
			if burst = int64(*e.Burst); burst < 0 {
				bad(f+".burst", strconv.Itoa(int(burst))+": must be at least 0")
				ok = false
			}
		}
		interval, known := rateLimitUnits[e.Unit]
		if !known {
			msg := unsupported(e.Unit, v1alpha1.RateLimitUnitSeconds, v1alpha1.RateLimitUnitMinutes, v1alpha1.RateLimitUnitHours)
			if msg == "" {
				msg = "a unit is required: Seconds, Minutes or Hours"
			}
			bad(f+".unit", msg)
			ok = false
		}
		if e.Requests == nil {
			continue
		}
		requests++
		if requests > 1 {
			bad(lf, "more than one entry with requests is not supported by mcpgate: Envoy's local rate limit filter keeps one token bucket "+
				"per route; write one entry (requests per unit, plus burst)")
			return nil
		}
		if ok {
			out = mustAny(&localratelimitv3.LocalRateLimit{
				StatPrefix: rateLimitStatPrefix,
				TokenBucket: &typev3.TokenBucket{
					MaxTokens:     uint32(int64(*e.Requests) + burst),
					TokensPerFill: wrapperspb.UInt32(uint32(*e.Requests)),
					FillInterval:  durationpb.New(interval),
				},
				// Both default to 0% ("for safety"): a per-route config without them limits nothing.
				FilterEnabled:  allRequests(),
				FilterEnforced: allRequests(),
			})
		}
	}
	return out
}

// allRequests is a runtime fraction of 100% without a runtime key (nothing can lower it).
func allRequests() *corev3.RuntimeFractionalPercent {
	return &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}}
}

// rateLimitOf returns the per-route LocalRateLimit of an attachment, or nil. It follows the
// precedence of JWT authentication in merge: the most specific level that sets one (backend,
// rule, route, listener), within a level the oldest valid policy. The Gateway level is not a
// route's: its limit is on the Gateway's RouteConfigurations (gatewayRateLimit), which Envoy
// reads for every route without its own (Http::Utility::resolveMostSpecificPerFilterConfig:
// weighted cluster, route, virtual host, route configuration). An invalid policy at any level
// makes the route answer 500 (merge), so its rate limit never applies.
func (t *translation) rateLimitOf(a attachment) *anypb.Any {
	if !t.rateLimits {
		return nil
	}
	levels := t.levels(a)
	for l := len(levels) - 1; l >= 1; l-- {
		if rl := firstRateLimit(levels[l]); rl != nil {
			return rl
		}
	}
	return nil
}

// gatewayRateLimit returns the LocalRateLimit of a Gateway's Gateway-level policies (the oldest
// valid one that sets one), or nil. buildGateway puts it on each RouteConfiguration of the
// Gateway, one per port (per filter chain, so per listener, on an HTTPS port): each config is
// one token bucket in Envoy, shared by every route of the config that has no LocalRateLimit of
// its own. A RouteConfiguration belongs to one Gateway (one
// Gateway per port standalone, one Envoy per Gateway in Kubernetes).
func (t *translation) gatewayRateLimit(gateway string) *anypb.Any {
	if !t.rateLimits {
		return nil
	}
	return firstRateLimit(t.policies.gateway[gateway])
}

// firstRateLimit returns the LocalRateLimit of the first valid policy of a level that sets one.
func firstRateLimit(level []*policyInfo) *anypb.Any {
	for _, pi := range level {
		if !pi.invalid && pi.rateLimit != nil {
			return pi.rateLimit
		}
	}
	return nil
}

// notLimited is a per-route LocalRateLimit that limits nothing: not enabled (filter_enabled
// unset: 0%), so Envoy's filter returns before it takes a token. Envoy refuses a per-route config
// without a token bucket, so it has one (never used).
func notLimited() *anypb.Any {
	return mustAny(&localratelimitv3.LocalRateLimit{
		StatPrefix: rateLimitStatPrefix,
		TokenBucket: &typev3.TokenBucket{
			MaxTokens:     1,
			TokensPerFill: wrapperspb.UInt32(1),
			FillInterval:  durationpb.New(time.Second),
		},
	})
}

// directFilters returns the typed_per_filter_config of a Gateway's direct responses (a rule's
// 500, the refusal of ambiguous paths): ext_proc disabled, and when the Gateway has a
// Gateway-level rate limit (on its RouteConfigurations), a LocalRateLimit that limits nothing, so
// that they stay outside the limit, as the routes that carry their own limit are.
func (t *translation) directFilters(gateway string) map[string]*anypb.Any {
	if t.gatewayRateLimit(gateway) != nil {
		return t.xds.unlimitedFilters
	}
	return t.xds.disabledFilters
}
