package double_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const rateLimitName = "envoy.filters.http.local_ratelimit"

// withRateLimit puts the local rate limit filter with a filter-level config that limits nothing
// at index at of the chain (after withCors: 1, as the translator does).
func withRateLimit(t *testing.T, at int) func(*hcmv3.HttpConnectionManager, *listenerv3.Listener) {
	return func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
		f := &hcmv3.HttpFilter{Name: rateLimitName, ConfigType: &hcmv3.HttpFilter_TypedConfig{
			TypedConfig: any_(t, &localratelimitv3.LocalRateLimit{StatPrefix: "limits"})}}
		h.HttpFilters = slices.Insert(h.HttpFilters, at, f)
	}
}

func both(fs ...func(*hcmv3.HttpConnectionManager, *listenerv3.Listener)) func(*hcmv3.HttpConnectionManager, *listenerv3.Listener) {
	return func(h *hcmv3.HttpConnectionManager, l *listenerv3.Listener) {
		for _, f := range fs {
			f(h, l)
		}
	}
}

func fraction(n uint32) *corev3.RuntimeFractionalPercent {
	return &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: n, Denominator: typev3.FractionalPercent_HUNDRED}}
}

// limit is a per-route LocalRateLimit as the translator writes it: max tokens, refilled per
// interval, enabled and enforced (enforce false: enabled only).
func limit(max, perFill uint32, interval time.Duration, enforce bool) *localratelimitv3.LocalRateLimit {
	l := &localratelimitv3.LocalRateLimit{StatPrefix: "limits", FilterEnabled: fraction(100), FilterEnforced: fraction(100),
		TokenBucket: &typev3.TokenBucket{MaxTokens: max, TokensPerFill: wrapperspb.UInt32(perFill), FillInterval: durationpb.New(interval)}}
	if !enforce {
		l.FilterEnforced = nil
	}
	return l
}

func withLimit(t *testing.T, m map[string]*anypb.Any, l *localratelimitv3.LocalRateLimit) map[string]*anypb.Any {
	out := map[string]*anypb.Any{rateLimitName: any_(t, l)}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestLocalRateLimitAsEnvoy reproduces Envoy's local rate limit filter after CORS: each route's
// LocalRateLimit is its own full bucket (two routes with the same config do not share one); past
// it a request gets 429 "local_rate_limited" (text/plain, flag RL, details local_rate_limited)
// before ext_proc's decoder and the upstream, through ext_proc's encoder (response headers on an
// MCP route); a route without a config, and one enabled but not enforced, are not
// refused; the counters are Envoy's with its tag; an unchanged RouteConfiguration keeps its
// buckets when another changes, a changed one starts full again; what it does not reproduce is
// refused.
func TestLocalRateLimitAsEnvoy(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := jsonUpstream(t)
	l := listener(t, e.listen, extProcFilter(5*time.Second), both(withCors(t), withRateLimit(t, 1)))
	hourly := limit(2, 2, time.Hour, true)
	limited := prefixRoute("limited", "/limited", "up", withLimit(t, disabled(t), hourly))
	twin := prefixRoute("twin", "/twin", "up", withLimit(t, disabled(t), hourly))
	mcp := prefixRoute("mcp", "/mcp", "up", withLimit(t, perRoute(t, mcpMode()), limit(1, 1, time.Hour, true)))
	shadow := prefixRoute("shadow", "/shadow", "up", withLimit(t, disabled(t), limit(1, 1, time.Hour, false)))
	free := prefixRoute("free", "/free", "up", disabled(t))
	rc := routeConfig(l.Name, vhost("vh", []string{"*"}, limited, twin, mcp, shadow, free))
	e.push(l, rc, staticCluster("up", up.addr))
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}
	get := func(path string) (*http.Response, string) { return do(t, "GET", e.url(path), nil) }

	calls := up.count()
	for i := range 2 {
		if resp, body := get("/limited"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q, want 200 (the bucket holds 2)", i+1, resp.StatusCode, body)
		}
	}
	// A POST with a body: refused before it is read, its connection still serves the next request.
	resp, body := do(t, "POST", e.url("/limited"), strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if resp.StatusCode != 429 || body != "local_rate_limited" || resp.Header.Get("content-type") != "text/plain" ||
		resp.Header.Get("x-envoy-ratelimited") != "" || resp.Header.Get("x-ratelimit-limit") != "" {
		t.Errorf("third request: %d %q %v, want 429 local_rate_limited text/plain, no x-envoy-ratelimited or x-ratelimit-*", resp.StatusCode, body, resp.Header)
	}
	if up.count() != calls+2 {
		t.Errorf("the upstream got %d requests, want 2", up.count()-calls)
	}
	lines := e.logs(3)
	if last := lines[len(lines)-1]; last["response_flags"] != "RL" || last["details"] != "local_rate_limited" || last["response_code"] != float64(429) {
		t.Errorf("access log %v, want RL, local_rate_limited, 429", last)
	}
	if resp, _ := get("/twin"); resp.StatusCode != 200 {
		t.Errorf("/twin: %d, want 200 (its own bucket, the same config)", resp.StatusCode)
	}
	for range 3 {
		if resp, _ := get("/free"); resp.StatusCode != 200 {
			t.Errorf("/free: %d, want 200 (no limit)", resp.StatusCode)
		}
	}
	for range 2 {
		if resp, _ := get("/shadow"); resp.StatusCode != 200 {
			t.Errorf("/shadow: %d, want 200 (enabled, not enforced)", resp.StatusCode)
		}
	}

	t.Run("a 429 passes ext_proc's encoder", func(t *testing.T) {
		if resp, _ := get("/mcp"); resp.StatusCode != 200 {
			t.Fatalf("first /mcp: %d", resp.StatusCode)
		}
		streams := e.ext.count()
		resp, _ := do(t, "GET", e.url("/mcp"), nil, "origin", "http://localhost:6274")
		if resp.StatusCode != 429 {
			t.Fatalf("second /mcp: %d, want 429", resp.StatusCode)
		}
		st := e.ext.streams(t, streams+1)[streams]
		// The route's mode sends the response (headers, and the body as it says), never the
		// refused request.
		if k := kinds(st.messages()); len(k) == 0 || k[0] != "response_headers" || slices.Contains(k, "request_headers") {
			t.Errorf("ext_proc got %v, want the response only", k)
		}

	})

	t.Run("counters", func(t *testing.T) {
		_, body := do(t, "GET", "http://"+e.d.AdminAddr+"/stats/prometheus", nil)
		for _, line := range []string{
			`envoy_http_local_rate_limit_enforced{envoy_local_http_ratelimit_prefix="limits"} 2`,
			`envoy_http_local_rate_limit_rate_limited{envoy_local_http_ratelimit_prefix="limits"} 3`,
		} {
			if !strings.Contains(body, line+"\n") {
				t.Errorf("/stats/prometheus has no line %q:\n%s", line, body)
			}
		}
	})

	t.Run("buckets live as long as their RouteConfiguration", func(t *testing.T) {
		other := routeConfig("other", vhost("o", []string{"*"}, free))
		e.push(l, rc, other, staticCluster("up", up.addr))
		if resp, _ := get("/limited"); resp.StatusCode != 429 {
			t.Errorf("after another RouteConfiguration changed: %d, want 429 (unchanged, its buckets kept)", resp.StatusCode)
		}
		changed := routeConfig(l.Name, vhost("vh", []string{"*"}, limited, twin, mcp, shadow, free, prefixRoute("new", "/new", "up", disabled(t))))
		e.push(l, changed, other, staticCluster("up", up.addr))
		if resp, _ := get("/limited"); resp.StatusCode != 200 {
			t.Errorf("after its RouteConfiguration changed: %d, want 200 (new buckets, full)", resp.StatusCode)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for name, c := range map[string]struct {
			l    *listenerv3.Listener
			tpfc *localratelimitv3.LocalRateLimit
			want string
		}{
			"no bucket":       {l, &localratelimitv3.LocalRateLimit{StatPrefix: "x", FilterEnabled: fraction(100)}, "token bucket must be set"},
			"fast refill":     {l, limit(1, 1, 10*time.Millisecond, true), "must be >= 50ms"},
			"half":            {l, &localratelimitv3.LocalRateLimit{StatPrefix: "x", FilterEnabled: fraction(50), TokenBucket: hourly.TokenBucket}, "fractions other than"},
			"x-ratelimit":     {l, &localratelimitv3.LocalRateLimit{StatPrefix: "x", EnableXRatelimitHeaders: 1, TokenBucket: hourly.TokenBucket}, "enable_x_ratelimit_headers"},
			"after ext_proc":  {listener(t, e.listen, extProcFilter(5*time.Second), both(withCors(t), withRateLimit(t, 2))), hourly, "right after cors"},
			"runtime key set": {l, &localratelimitv3.LocalRateLimit{StatPrefix: "x", FilterEnabled: &corev3.RuntimeFractionalPercent{RuntimeKey: "k", DefaultValue: fraction(100).DefaultValue}, TokenBucket: hourly.TokenBucket}, "runtime_key"},
		} {
			e.push(c.l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "up", withLimit(t, disabled(t), c.tpfc)))), staticCluster("up", up.addr))
			if n := e.lastNACK(); !strings.Contains(n, c.want) {
				t.Errorf("%s: NACK %q, want one with %q", name, n, c.want)
			}
		}
	})
}

// TestLocalRateLimitRouteConfigurationBucket: a LocalRateLimit on the RouteConfiguration (the
// translator's Gateway-level limit) is one bucket, shared by every route below without one of its
// own: two routes take from the same 2 tokens. A route with its own config has its own bucket,
// and a direct response with a config that is not enabled is never limited, as in Envoy
// (resolveMostSpecificPerFilterConfig: the most specific level that has one, nothing merges).
func TestLocalRateLimitRouteConfigurationBucket(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := jsonUpstream(t)
	l := listener(t, e.listen, extProcFilter(5*time.Second), both(withCors(t), withRateLimit(t, 1)))
	notEnabled := &localratelimitv3.LocalRateLimit{StatPrefix: "limits", TokenBucket: limit(1, 1, time.Hour, true).TokenBucket}
	direct := &routev3.Route{Name: "direct", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/direct"}},
		Action:               &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 500}},
		TypedPerFilterConfig: withLimit(t, disabled(t), notEnabled)}
	rc := routeConfig(l.Name, vhost("vh", []string{"*"},
		prefixRoute("a", "/a", "up", disabled(t)),
		prefixRoute("b", "/b", "up", disabled(t)),
		prefixRoute("own", "/own", "up", withLimit(t, disabled(t), limit(1, 1, time.Hour, true))),
		direct))
	rc.TypedPerFilterConfig = map[string]*anypb.Any{rateLimitName: any_(t, limit(2, 2, time.Hour, true))}
	e.push(l, rc, staticCluster("up", up.addr))
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}
	status := func(path string) int {
		resp, _ := do(t, "GET", e.url(path), nil)
		return resp.StatusCode
	}
	if got := status("/a"); got != 200 {
		t.Fatalf("/a: %d, want 200 (first token of the shared bucket)", got)
	}
	if got := status("/b"); got != 200 {
		t.Fatalf("/b: %d, want 200 (second token of the shared bucket)", got)
	}
	if got := status("/a"); got != 429 {
		t.Errorf("/a again: %d, want 429 (the shared bucket is empty)", got)
	}
	if got := status("/b"); got != 429 {
		t.Errorf("/b again: %d, want 429 (the shared bucket is empty)", got)
	}
	if got := status("/own"); got != 200 {
		t.Errorf("/own: %d, want 200 (its own bucket)", got)
	}
	for range 3 {
		if got := status("/direct"); got != 500 {
			t.Errorf("/direct: %d, want 500 (its config is not enabled: never limited)", got)
		}
	}
}
