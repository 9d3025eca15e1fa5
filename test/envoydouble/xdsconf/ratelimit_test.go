package xdsconf_test

import (
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// TestTokenBucket: the bucket, on a clock of the test's, is Envoy's AtomicTokenBucketImpl as the
// local rate limit filter makes it (max_tokens, tokens_per_fill / fill_interval): full at first (a
// burst of max_tokens), a request takes one whole token, tokens come back continuously at
// tokens_per_fill per fill_interval (so a part of an interval brings a part of them) and never
// past max_tokens. A refused request takes nothing.
func TestTokenBucket(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	bucket := func(maxTokens, perFill uint32, interval time.Duration) *xdsconf.TokenBucket {
		b := xdsconf.NewTokenBucket(maxTokens, perFill, interval)
		b.Now = func() time.Time { return clock }
		return b
	}
	// take consumes n times after the clock moved by d and says which were allowed.
	take := func(b *xdsconf.TokenBucket, d time.Duration, n int) []bool {
		clock = clock.Add(d)
		out := make([]bool, n)
		for i := range out {
			out[i] = b.Consume()
		}
		return out
	}
	check := func(name string, got []bool, want ...bool) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d results, want %d", name, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: allowed %v, want %v", name, got, want)
				return
			}
		}
	}

	// max_tokens 3, tokens_per_fill 2, fill_interval 1s: 2 tokens a second, up to 3.
	b := bucket(3, 2, time.Second)
	check("a burst of max_tokens, then none", take(b, 0, 4), true, true, true, false)
	check("a quarter of a fill_interval: half a token, not enough", take(b, 250*time.Millisecond, 1), false)
	check("half a fill_interval: one token", take(b, 250*time.Millisecond, 2), true, false)
	check("a whole fill_interval: tokens_per_fill", take(b, time.Second, 3), true, true, false)
	check("an hour: max_tokens, no more", take(b, time.Hour, 4), true, true, true, false)
	check("no time: nothing", take(b, 0, 1), false)

	// 2 tokens per hour is one every 30 minutes, not 2 at the top of the hour.
	b = bucket(2, 2, time.Hour)
	check("2 per hour: a burst of 2", take(b, 0, 3), true, true, false)
	check("2 per hour: 29 minutes", take(b, 29*time.Minute, 1), false)
	check("2 per hour: 31 minutes", take(b, 2*time.Minute, 2), true, false)

	// tokens_per_fill above max_tokens: capped at max_tokens all the same.
	b = bucket(1, 5, time.Second)
	check("tokens_per_fill 5, max_tokens 1", take(b, 0, 2), true, false)
	check("a fill_interval later: max_tokens only", take(b, time.Second, 2), true, false)
}
