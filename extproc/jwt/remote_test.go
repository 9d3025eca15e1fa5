package jwt

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// jwksServer is a real HTTP server publishing a key set that a test can change or break.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int64

	mu     sync.Mutex
	status int
	body   string
	hang   bool // wait for the client to give up
}

func newJWKSServer(t *testing.T, body string) *jwksServer {
	s := &jwksServer{status: http.StatusOK, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		status, body, hang := s.status, s.body, s.hang
		s.mu.Unlock()
		if hang {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

// remoteConfig is a Strict policy with one remote provider.
func remoteConfig(issuer, url string, cacheDuration time.Duration) *policyv1.JWTAuthentication {
	return &policyv1.JWTAuthentication{Providers: []*policyv1.JWTProvider{{
		Issuer: issuer,
		Jwks: &policyv1.JWTProvider_RemoteJwks{RemoteJwks: &policyv1.RemoteJWKS{
			Url: url, CacheDuration: durationpb.New(cacheDuration),
		}},
	}}}
}

// quiet is a logger that drops everything, for tests that provoke fetch failures.
func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// waitFor polls cond until it holds, failing the test after 10 s (an event wait, not a timing
// assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRemoteJWKSFetchedOnceAndCached(t *testing.T) {
	s := newSigner(t, "RS256", "k1")
	srv := newJWKSServer(t, jwks(t, s))
	a := mustNew(t, remoteConfig("iss", srv.URL+"/jwks", time.Hour), Options{CacheSize: -1, HTTPClient: srv.Client()})
	now := time.Now()
	for range 5 {
		wantOK(t, a.Authenticate(t.Context(), bearer(s.sign(t, claimsAt(now, "iss", nil)))))
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1 within its cache duration", n)
	}
}

func TestRemoteJWKSRefreshFailureKeepsKeys(t *testing.T) {
	s := newSigner(t, "ES256", "k1")
	srv := newJWKSServer(t, jwks(t, s))
	a := mustNew(t, remoteConfig("iss", srv.URL, 20*time.Millisecond), Options{CacheSize: -1, Logger: quiet()})
	now := time.Now()
	wantOK(t, a.Authenticate(t.Context(), bearer(s.sign(t, claimsAt(now, "iss", nil)))))
	waitFor(t, "a scheduled refresh", func() bool { return srv.fetches.Load() >= 3 })

	srv.serve(http.StatusInternalServerError, "down")
	n := srv.fetches.Load()
	waitFor(t, "two failed refreshes", func() bool { return srv.fetches.Load() >= n+2 })
	wantOK(t, a.Authenticate(t.Context(), bearer(s.sign(t, claimsAt(now, "iss", nil)))))

	srv.serve(http.StatusOK, `{"keys": "not an array"}`)
	n = srv.fetches.Load()
	waitFor(t, "two refreshes of a bad key set", func() bool { return srv.fetches.Load() >= n+2 })
	wantOK(t, a.Authenticate(t.Context(), bearer(s.sign(t, claimsAt(now, "iss", nil)))))

	a.Close()
	// After Close the loaded keys still verify.
	wantOK(t, a.Authenticate(t.Context(), bearer(s.sign(t, claimsAt(now, "iss", nil)))))
}

func TestRemoteJWKSRotationOnUnknownKid(t *testing.T) {
	now := time.Now()
	clk := &clock{t: now}
	k1, k2, k3 := newSigner(t, "RS256", "k1"), newSigner(t, "RS256", "k2"), newSigner(t, "RS256", "k3")
	srv := newJWKSServer(t, jwks(t, k1))
	a := mustNew(t, remoteConfig("iss", srv.URL, time.Hour), Options{Now: clk.now, MinRefetchInterval: 30 * time.Second})

	tok1 := bearer(k1.sign(t, claimsAt(now, "iss", nil)))
	wantOK(t, a.Authenticate(t.Context(), tok1)) // now cached
	if a.cache.len() != 1 {
		t.Fatal("token not cached")
	}

	// The issuer rotates to k2 only. A k2 token right after the first fetch is refused: the refetch
	// is rate-limited.
	srv.serve(http.StatusOK, jwks(t, k2))
	tok2 := bearer(k2.sign(t, claimsAt(now, "iss", nil)))
	wantInvalid(t, a.Authenticate(t.Context(), tok2), ReasonNoMatchingKey)
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetched %d times, want 1 (refetch inside the minimum interval)", n)
	}

	// Past the minimum interval the unknown kid triggers a fetch and the token verifies.
	clk.set(now.Add(31 * time.Second))
	wantOK(t, a.Authenticate(t.Context(), tok2))
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetched %d times, want 2", n)
	}
	// The key set changed, so the cached k1 token is dropped and refused now.
	wantInvalid(t, a.Authenticate(t.Context(), tok1), ReasonNoMatchingKey)
	// A kid nobody publishes costs at most one fetch per interval.
	tok3 := bearer(k3.sign(t, claimsAt(now, "iss", nil)))
	wantInvalid(t, a.Authenticate(t.Context(), tok3), ReasonNoMatchingKey)
	clk.set(now.Add(62 * time.Second))
	wantInvalid(t, a.Authenticate(t.Context(), tok3), ReasonNoMatchingKey)
	wantInvalid(t, a.Authenticate(t.Context(), tok3), ReasonNoMatchingKey)
	if n := srv.fetches.Load(); n != 3 {
		t.Fatalf("fetched %d times, want 3", n)
	}
	// The same key set fetched again keeps the cache.
	wantOK(t, a.Authenticate(t.Context(), tok2))
	clk.set(now.Add(93 * time.Second))
	wantInvalid(t, a.Authenticate(t.Context(), tok3), ReasonNoMatchingKey)
	if srv.fetches.Load() != 4 || a.cache.len() != 1 {
		t.Fatalf("fetches %d, cache %d: an unchanged key set cleared the cache", srv.fetches.Load(), a.cache.len())
	}
}

func TestRemoteJWKSFetchFailures(t *testing.T) {
	s := newSigner(t, "EdDSA", "k")
	tok := bearer(s.sign(t, claimsAt(time.Now(), "iss", nil)))
	cases := []struct {
		name   string
		status int
		body   string
		hang   bool
	}{
		{"HTTP 500", http.StatusInternalServerError, "oops", false},
		{"not JSON", http.StatusOK, "<html>", false},
		{"no keys", http.StatusOK, `{"keys":[]}`, false},
		// the signer's own key set, valid but for its size: only the limit can refuse it
		{"too large", http.StatusOK, strings.Repeat(" ", maxJWKSBytes) + jwks(t, s), false},
		{"timeout", http.StatusOK, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newJWKSServer(t, c.body)
			srv.status, srv.hang = c.status, c.hang
			a := mustNew(t, remoteConfig("iss", srv.URL, time.Hour), Options{FetchTimeout: 100 * time.Millisecond, Logger: quiet()})
			wantInvalid(t, a.Authenticate(t.Context(), tok), ReasonFetchFailed)
		})
	}
	t.Run("redirect", func(t *testing.T) {
		// The key set is where the redirect points, but a redirect is not followed (as Envoy's
		// fetch): it could lead to plain http or to a host the JWKS server names.
		keys := newJWKSServer(t, jwks(t, s))
		redirect := httptest.NewServer(http.RedirectHandler(keys.URL, http.StatusFound))
		t.Cleanup(redirect.Close)
		a := mustNew(t, remoteConfig("iss", redirect.URL, time.Hour), Options{Logger: quiet()})
		wantInvalid(t, a.Authenticate(t.Context(), tok), ReasonFetchFailed)
		if n := keys.fetches.Load(); n != 0 {
			t.Errorf("the redirect was followed: %d fetches of its target", n)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		srv := newJWKSServer(t, "")
		url := srv.URL
		srv.Close()
		a := mustNew(t, remoteConfig("iss", url, time.Hour), Options{Logger: quiet()})
		wantInvalid(t, a.Authenticate(t.Context(), tok), ReasonFetchFailed)
	})
}

// TestRemoteJWKSRefetchFailureIsFetchFailed: when the JWKS server goes down, a token whose kid
// the loaded keys lack is refused as a fetch failure (the refetch it caused failed), not as a
// token without a matching key; inside the minimum interval, where no refetch is tried, it is
// refused for its kid. Either way the answer is a 401.
func TestRemoteJWKSRefetchFailureIsFetchFailed(t *testing.T) {
	now := time.Now()
	clk := &clock{t: now}
	k1, k2 := newSigner(t, "ES256", "k1"), newSigner(t, "ES256", "k2")
	srv := newJWKSServer(t, jwks(t, k1))
	a := mustNew(t, remoteConfig("iss", srv.URL, time.Hour), Options{Now: clk.now, MinRefetchInterval: 30 * time.Second, CacheSize: -1})
	tok1 := bearer(k1.sign(t, claimsAt(now, "iss", nil)))
	tok2 := bearer(k2.sign(t, claimsAt(now, "iss", nil)))
	wantOK(t, a.Authenticate(t.Context(), tok1))

	srv.Close()
	// Rate-limited: no fetch is tried, the kid is what is wrong.
	wantInvalid(t, a.Authenticate(t.Context(), tok2), ReasonNoMatchingKey)

	clk.set(now.Add(31 * time.Second))
	res := a.Authenticate(t.Context(), tok2)
	wantInvalid(t, res, ReasonFetchFailed)
	if ans, reject := a.Decide(res); !reject || ans.Status != http.StatusUnauthorized || ans.Body != ReasonFetchFailed {
		t.Fatalf("Decide = %+v, %v; want a 401 %q", ans, reject, ReasonFetchFailed)
	}
	// The keys loaded before the outage still verify their tokens.
	wantOK(t, a.Authenticate(t.Context(), tok1))
	// Within the interval after the failed attempt, the refetch is rate-limited again.
	wantInvalid(t, a.Authenticate(t.Context(), tok2), ReasonNoMatchingKey)
}
