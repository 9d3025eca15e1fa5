package jwt

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// maxJWKSBytes bounds a fetched key set; real ones are a few KiB.
const maxJWKSBytes = 1 << 20

// errRateLimited is returned by refetch when the last fetch was too recent.
var errRateLimited = errors.New("JWKS fetched too recently; not fetching again yet")

// remoteKeys is the key set of one provider's remote JWKS: fetched in the background when the
// Authenticator starts and every cache duration after a success (sooner, with backoff, after a
// failure), and on demand (no keys yet, or a token whose kid no key has) at most once per
// minimum interval. Concurrent fetches share one HTTP request. A failed fetch keeps the last good
// keys.
type remoteKeys struct {
	// url is the key set's; logURL is url as logs and errors show it (RedactURL).
	url, logURL   string
	cacheDuration time.Duration
	fetchTimeout  time.Duration
	minInterval   time.Duration
	client        *http.Client
	log           *slog.Logger
	now           func() time.Time
	onChange      func() // called when the fetched set differs from the previous one

	keys   atomic.Pointer[KeySet]
	flight singleflight.Group

	mu          sync.Mutex
	lastAttempt time.Time
	digest      [sha256.Size]byte
}

// current returns the last good keys, nil before the first successful fetch.
func (r *remoteKeys) current() *KeySet { return r.keys.Load() }

// get returns the keys, waiting (within ctx) for a fetch when there are none yet.
func (r *remoteKeys) get(ctx, base context.Context) (*KeySet, error) {
	if ks := r.keys.Load(); ks != nil {
		return ks, nil
	}
	err := r.refetch(ctx, base, false)
	if ks := r.keys.Load(); ks != nil {
		return ks, nil
	}
	if err == nil {
		err = errors.New("no keys")
	}
	return nil, err
}

// refetch fetches the key set, joining a fetch in flight, and waits for it at most until ctx is
// done. See start for force and base.
func (r *remoteKeys) refetch(ctx, base context.Context, force bool) error {
	select {
	case res := <-r.start(base, force):
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start begins a fetch of the key set, or joins the one in flight, and returns the channel of its
// outcome. Unless force is set, the fetch does nothing and fails with errRateLimited when the last
// attempt is more recent than the minimum interval. The fetch runs under base (the
// Authenticator's lifetime), so that a caller giving up does not cancel it for the others.
func (r *remoteKeys) start(base context.Context, force bool) <-chan singleflight.Result {
	return r.flight.DoChan("jwks", func() (any, error) {
		r.mu.Lock()
		if !force && !r.lastAttempt.IsZero() && r.now().Sub(r.lastAttempt) < r.minInterval {
			r.mu.Unlock()
			return nil, errRateLimited
		}
		r.lastAttempt = r.now()
		r.mu.Unlock()
		return nil, r.fetch(base)
	})
}

// fetch downloads and parses the key set and, on success, installs it.
func (r *remoteKeys) fetch(base context.Context) error {
	ctx, cancel := context.WithTimeout(base, r.fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", r.logURL, withoutURL(err))
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", r.logURL, withoutURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxJWKSBytes))
		return fmt.Errorf("JWKS %s: HTTP status %d", r.logURL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("JWKS %s: reading body: %w", r.logURL, err)
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("JWKS %s: body larger than %d bytes", r.logURL, maxJWKSBytes)
	}
	ks, err := ParseJWKS(body)
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", r.logURL, err)
	}
	digest := sha256.Sum256(body)
	r.mu.Lock()
	first, changed := r.digest == [sha256.Size]byte{}, digest != r.digest
	r.digest = digest
	r.keys.Store(ks)
	r.mu.Unlock()
	if changed {
		r.log.Info("JWKS loaded", "url", r.logURL, "keys", ks.Len())
		if !first { // no token of this provider can be cached before its first key set
			r.onChange()
		}
	}
	return nil
}

// run refreshes the key set until base is done. first is the fetch New started; after it, the
// set is fetched again every cache duration after a success, and after 1 s, 2 s, 4 s... (at most
// the cache duration) after failures.
func (r *remoteKeys) run(base context.Context, first <-chan singleflight.Result) {
	const firstRetry = time.Second
	retry := min(firstRetry, r.cacheDuration)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	outcome := first
	for {
		var err error
		select {
		case <-base.Done():
			return
		case res := <-outcome:
			err = res.Err
		}
		if base.Err() != nil {
			return
		}
		next := r.cacheDuration
		if err != nil {
			kept := 0
			if ks := r.keys.Load(); ks != nil {
				kept = ks.Len()
			}
			r.log.Warn("JWKS fetch failed; keeping the last good keys", "url", r.logURL, "kept_keys", kept, "retry_in", retry, "err", err)
			next = retry
			retry = min(retry*2, r.cacheDuration)
		} else {
			retry = min(firstRetry, r.cacheDuration)
		}
		timer.Reset(next)
		select {
		case <-base.Done():
			return
		case <-timer.C:
		}
		outcome = r.start(base, true)
	}
}

// RedactURL returns a JWKS URL for logs and errors: its userinfo and query, where credentials are
// put (https://user:pass@host, ?api_key=...), become REDACTED, and its fragment goes. It reads
// the URL as net/url does (the fragment from the first '#', the query from the first '?' before
// it, the userinfo up to the last '@' before the path) without parsing it, so that a URL that
// does not parse is redacted too.
func RedactURL(raw string) string {
	rest, query := raw, false
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest, query = rest[:i], rest[i] == '?'
	}
	if scheme, after, found := strings.Cut(rest, "://"); found {
		authority := after
		if i := strings.IndexByte(after, '/'); i >= 0 {
			authority = after[:i]
		}
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			rest = scheme + "://REDACTED@" + after[at+1:]
		}
	}
	if query {
		rest += "?REDACTED"
	}
	return rest
}

// withoutURL returns err without the *url.Error that net/http and net/url wrap their errors in:
// it quotes the whole URL, query included.
func withoutURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}
