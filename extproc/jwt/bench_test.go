package jwt

import (
	"testing"
	"time"
)

// BenchmarkAuthenticate measures one request's authentication: "cold" verifies the token fully
// (parse, signature, claims) because the cache is off, "warm" answers a repeated token from the
// cache. The lab's token (RS256, 2048-bit) and a generated ES256 token.
func BenchmarkAuthenticate(b *testing.B) {
	es := newSigner(b, "ES256", "k")
	esToken := es.sign(b, claimsAt(time.Now(), "iss", map[string]any{"org": "solo.io", "team": "team-id"}))
	for _, bc := range []struct {
		name, issuer, keys, token string
	}{
		{"RS256", "solo.io", labJWKS, labToken},
		{"ES256", "iss", jwks(b, es), esToken},
	} {
		for _, warm := range []bool{false, true} {
			name, size := bc.name+"/cold", -1
			if warm {
				name, size = bc.name+"/warm", 0
			}
			b.Run(name, func(b *testing.B) {
				a := mustNew(b, inlineConfig(strict, bc.issuer, bc.keys), Options{CacheSize: size})
				h := bearer(bc.token)
				if r := a.Authenticate(b.Context(), h); r.Status != OK {
					b.Fatalf("token refused: %s", r.Reason)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if a.Authenticate(b.Context(), h).Status != OK {
						b.Fatal("refused")
					}
				}
			})
		}
	}
}
