package xdsconf

import (
	"fmt"
	"math"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// LocalRateLimitFilterType is the typed_config type of envoy.filters.http.local_ratelimit, and of
// its per-route config.
const LocalRateLimitFilterType = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"

// RateLimitFilter is the envoy.filters.http.local_ratelimit filter of the HCM chain. The double
// implements it right after the CORS filter (or first), before the stateful session filter and
// ext_proc, with a filter-level config that limits nothing (stat_prefix only: filter_enabled
// unset is 0%); routes enable it with their own LocalRateLimit.
type RateLimitFilter struct {
	// Name is the filter's name in http_filters: the key of typed_per_filter_config.
	Name string
	// StatPrefix is the filter-level config's stat_prefix.
	StatPrefix string
}

// LocalRateLimit is a compiled per-route LocalRateLimit. As in Envoy (FilterConfig owns its
// LocalRateLimiterImpl), each compiled config is its own token bucket: one per route (or
// weighted cluster) that carries one, made anew when its RouteConfiguration is compiled anew.
type LocalRateLimit struct {
	// StatPrefix is stat_prefix: Envoy counts <StatPrefix>.http_local_rate_limit.{enabled,ok,
	// rate_limited,enforced}.
	StatPrefix string
	// Enabled and Enforced are filter_enabled and filter_enforced; the double implements 0% and
	// 100% without a runtime key (unset: 0%, "for safety").
	Enabled, Enforced bool
	// Bucket is the token bucket.
	Bucket *TokenBucket
}

// TokenBucket is Envoy's AtomicTokenBucketImpl as the local rate limit filter uses it (Envoy
// 1.34+, where the timer-based bucket was removed): it starts full with max_tokens, refills
// continuously at tokens_per_fill / fill_interval tokens a second up to max_tokens, and a request
// takes one whole token or is refused. So 2 tokens per hour is one token every 30 minutes, not 2
// at the top of each hour.
type TokenBucket struct {
	// Now is the bucket's clock: time.Now (NewTokenBucket), a test's own clock in tests. It is read
	// at each Consume; set it before the first.
	Now func() time.Time

	mu     sync.Mutex
	max    float64
	rate   float64 // tokens a second
	tokens float64
	// last is when tokens was last brought up to date: zero before the first Consume, the
	// bucket being full until then (a full bucket gains nothing).
	last time.Time
}

// NewTokenBucket returns a full bucket whose clock is time.Now.
func NewTokenBucket(maxTokens, perFill uint32, interval time.Duration) *TokenBucket {
	return &TokenBucket{Now: time.Now, max: float64(maxTokens), rate: float64(perFill) / interval.Seconds(), tokens: float64(maxTokens)}
}

// Consume takes a token; false when the bucket holds less than one.
func (b *TokenBucket) Consume() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.Now()
	if !b.last.IsZero() {
		b.tokens = math.Min(b.max, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// CompileRateLimitFilter checks the filter's typed_config: the double implements the
// filter-level config that only names the stats (a bucket, or enabling it, at the filter level
// would limit every route of the listener together, which mcpgate never emits).
func CompileRateLimitFilter(name string, a *anypb.Any, path string) (*RateLimitFilter, error) {
	var cfg localratelimitv3.LocalRateLimit
	if err := unpack(a, &cfg, path); err != nil {
		return nil, err
	}
	if err := validate(&cfg, path); err != nil {
		return nil, err
	}
	if err := checkFields(&cfg, path, "stat_prefix"); err != nil {
		return nil, err
	}
	return &RateLimitFilter{Name: name, StatPrefix: cfg.GetStatPrefix()}, nil
}

// compileLocalRateLimit compiles a per-route LocalRateLimit. Envoy refuses a per-route config
// without token_bucket ("local rate limit token bucket must be set for per filter configs") and
// a fill_interval under 50 ms; the double refuses every field but the bucket, the stat prefix
// and the two fractions (descriptors, rate_limits, status, response headers, x-ratelimit headers,
// per-connection buckets, ... are not reproduced).
func compileLocalRateLimit(a *anypb.Any, path string) (*LocalRateLimit, error) {
	var cfg localratelimitv3.LocalRateLimit
	if err := unpack(a, &cfg, path); err != nil {
		return nil, err
	}
	if err := validate(&cfg, path); err != nil {
		return nil, err
	}
	if err := checkFields(&cfg, path, "stat_prefix", "token_bucket", "filter_enabled", "filter_enforced"); err != nil {
		return nil, err
	}
	tb := cfg.GetTokenBucket()
	if tb == nil {
		return nil, fmt.Errorf("%s.token_bucket: local rate limit token bucket must be set for per filter configs", path)
	}
	interval := tb.GetFillInterval().AsDuration()
	if interval < 50*time.Millisecond {
		return nil, fmt.Errorf("%s.token_bucket.fill_interval: local rate limit token bucket fill timer must be >= 50ms", path)
	}
	perFill := uint32(1) // PROTOBUF_GET_WRAPPED_OR_DEFAULT(..., tokens_per_fill, 1)
	if w := tb.GetTokensPerFill(); w != nil {
		perFill = w.GetValue()
	}
	out := &LocalRateLimit{StatPrefix: cfg.GetStatPrefix(), Bucket: NewTokenBucket(tb.GetMaxTokens(), perFill, interval)}
	var err error
	if out.Enabled, err = allOrNothing(cfg.GetFilterEnabled(), path+".filter_enabled"); err != nil {
		return nil, err
	}
	if out.Enforced, err = allOrNothing(cfg.GetFilterEnforced(), path+".filter_enforced"); err != nil {
		return nil, err
	}
	return out, nil
}

// allOrNothing reads a RuntimeFractionalPercent of 0% or 100% without a runtime key (the double
// has no runtime, and does not draw random fractions); unset is 0%.
func allOrNothing(f *corev3.RuntimeFractionalPercent, path string) (bool, error) {
	if f == nil {
		return false, nil
	}
	if f.GetRuntimeKey() != "" {
		return false, fmt.Errorf("%s.runtime_key: not implemented by envoydouble (no runtime layer)", path)
	}
	d := f.GetDefaultValue()
	var den uint32
	switch d.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		den = 100
	case typev3.FractionalPercent_TEN_THOUSAND:
		den = 10000
	case typev3.FractionalPercent_MILLION:
		den = 1000000
	}
	switch n := d.GetNumerator(); {
	case n == 0:
		return false, nil
	case n >= den:
		return true, nil
	}
	return false, fmt.Errorf("%s.default_value: fractions other than 0%% and 100%% are not implemented by envoydouble", path)
}
