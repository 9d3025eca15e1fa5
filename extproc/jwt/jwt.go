// Package jwt authenticates requests with the bearer token of their Authorization header, as a
// policy's JWTAuthentication says: providers (issuer, audiences, inline or remote JWKS), modes
// Strict, Optional and Permissive, and refusals worded like Envoy's jwt_authn.
//
// Signatures and time claims are checked with github.com/golang-jwt/jwt/v5; keys are parsed with
// go-jose (see ParseJWKS). Accepted algorithms are RS256/384/512, PS256/384/512, ES256/384/512 and
// EdDSA (Ed25519); "none" and HMAC are refused. exp, nbf and iat are checked with 60 s of clock
// skew. Verified tokens are cached until they expire, so a repeated token costs a map lookup.
// Tokens are never logged.
//
// Why go-jose's JSONWebKey (github.com/go-jose/go-jose/v4) parses the key sets rather than
// github.com/MicahParks/jwkset: go-jose is already a dependency of the module (one module less to
// vet and update) and is widely used and maintained; it turns RSA, EC (P-256, P-384, P-521) and
// OKP (Ed25519) keys into the crypto types golang-jwt verifies with, and it checks what a careless
// parser would not (an x5c leaf certificate must carry the same key, EC points must be on their
// curve). jwkset's value is HTTP storage and refresh, which this package does itself so that it
// can keep the last good keys, rate-limit fetches and drop its token cache on rotation. Keys are
// parsed one at a time (not as a JSONWebKeySet) so that an error names the key that caused it.
package jwt

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// ClockSkew is the leeway allowed on exp, nbf and iat, as Envoy's default clock_skew_seconds.
const ClockSkew = 60 * time.Second

// Defaults of Options and of a RemoteJWKS without cache_duration.
const (
	DefaultFetchTimeout       = 5 * time.Second
	DefaultMinRefetchInterval = 30 * time.Second
	DefaultCacheSize          = 10000
	DefaultCacheTTL           = 5 * time.Minute
	DefaultJWKSCacheDuration  = 5 * time.Minute
)

// Options tune an Authenticator. The zero value gives the defaults.
type Options struct {
	// HTTPClient fetches remote JWKS; nil means a new http.Client that follows no redirect
	// (noRedirects).
	HTTPClient *http.Client
	// FetchTimeout bounds one JWKS fetch (default 5 s).
	FetchTimeout time.Duration
	// MinRefetchInterval is the least time between two fetches of one JWKS caused by requests (a
	// token whose kid no key has, or no keys yet); default 30 s. The scheduled refresh is not
	// limited by it.
	MinRefetchInterval time.Duration
	// CacheSize is the number of verified tokens remembered (default 10000); negative disables the
	// cache.
	CacheSize int
	// CacheTTL is the longest a verified token is remembered (default 5 min); an entry also expires
	// at the token's exp.
	CacheTTL time.Duration
	// Logger receives JWKS fetch outcomes (never tokens); nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// Authenticator verifies the bearer tokens of one JWTAuthentication. It is safe for concurrent
// use. Close stops its background JWKS refresh.
type Authenticator struct {
	mode      policyv1.JWTAuthentication_Mode
	providers []*provider
	validator *gojwt.Validator
	cache     *tokenCache
	now       func() time.Time

	base   context.Context // the Authenticator's lifetime: background refresh and fetches
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// provider is one issuer with its audiences and keys.
type provider struct {
	issuer    string
	audiences []string
	inline    *KeySet     // set for an inline JWKS
	remote    *remoteKeys // set for a remote JWKS
}

// New builds the Authenticator of cfg. Inline key sets are parsed now (an error names the
// provider's issuer); remote ones start being fetched in the background now. An error leaves
// nothing running.
func New(cfg *policyv1.JWTAuthentication, opts Options) (*Authenticator, error) {
	if cfg == nil {
		return nil, errors.New("jwt authentication: no configuration")
	}
	if len(cfg.GetProviders()) == 0 {
		return nil, errors.New("jwt authentication: no providers")
	}
	opts = opts.withDefaults()
	a := &Authenticator{
		mode:      cfg.GetMode(),
		validator: gojwt.NewValidator(gojwt.WithLeeway(ClockSkew), gojwt.WithIssuedAt(), gojwt.WithExpirationRequired(), gojwt.WithTimeFunc(opts.Now)),
		cache:     newTokenCache(opts.CacheSize, opts.CacheTTL),
		now:       opts.Now,
	}
	for i, pc := range cfg.GetProviders() {
		p := &provider{issuer: pc.GetIssuer(), audiences: pc.GetAudiences()}
		switch {
		case pc.GetRemoteJwks() != nil:
			r := pc.GetRemoteJwks()
			if err := CheckJWKSURL(r.GetUrl()); err != nil {
				return nil, fmt.Errorf("jwt provider %d (issuer %q): remote JWKS url %w", i, p.issuer, err)
			}
			dur := r.GetCacheDuration().AsDuration()
			if r.GetCacheDuration() == nil || dur <= 0 {
				dur = DefaultJWKSCacheDuration
			}
			p.remote = &remoteKeys{
				url:           r.GetUrl(),
				logURL:        RedactURL(r.GetUrl()),
				cacheDuration: dur,
				fetchTimeout:  opts.FetchTimeout,
				minInterval:   opts.MinRefetchInterval,
				client:        opts.HTTPClient,
				log:           opts.Logger.With("issuer", p.issuer),
				now:           opts.Now,
				onChange:      a.cache.clear,
			}
		case pc.GetInlineJwks() != "":
			ks, err := ParseJWKS([]byte(pc.GetInlineJwks()))
			if err != nil {
				return nil, fmt.Errorf("jwt provider %d (issuer %q): inline JWKS: %w", i, p.issuer, err)
			}
			p.inline = ks
		default:
			return nil, fmt.Errorf("jwt provider %d (issuer %q): no JWKS (set inline or remote)", i, p.issuer)
		}
		a.providers = append(a.providers, p)
	}
	a.base, a.cancel = context.WithCancel(context.Background())
	for _, p := range a.providers {
		if p.remote != nil {
			first := p.remote.start(a.base, true)
			a.wg.Go(func() { p.remote.run(a.base, first) })
		}
	}
	return a, nil
}

// CheckJWKSURL says why raw is not a remote JWKS URL that ext_proc fetches, or returns nil: it
// must be an absolute http or https URL with a host, a port (if any) from 1 to 65535, and no
// userinfo. Credentials in the URL are refused rather than redacted: the URL is carried whole in
// the policy resource, the translator's output and the xDS debug dump, and a JWKS is public key
// material that needs none. The translator refuses a policy through this same function, so that
// ext_proc never receives a URL it refuses (which would reject the whole policy update). The error
// shows raw redacted (userinfo and query hidden, RedactURL) and does not name the field: the
// caller does.
func CheckJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q: %w", RedactURL(raw), withoutURL(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https", u.Opaque != "":
		return fmt.Errorf("%q: want an absolute http or https URL", RedactURL(raw))
	case u.User != nil:
		return fmt.Errorf("%q: userinfo (user:password@) is not allowed in a JWKS URL", RedactURL(raw))
	case u.Hostname() == "":
		return fmt.Errorf("%q: want an absolute http or https URL with a host", RedactURL(raw))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("%q: port %s: want 1 to 65535", RedactURL(raw), p)
		}
	}
	return nil
}

// noRedirects makes an HTTP client return a redirect as the answer, which a JWKS fetch refuses
// (not 200), as Envoy's remote_jwks fetch does: a redirect could take the fetch to plain http, or
// to any host the JWKS server names.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// withDefaults fills the zero fields of o.
func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{CheckRedirect: noRedirects}
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = DefaultFetchTimeout
	}
	if o.MinRefetchInterval <= 0 {
		o.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = DefaultCacheTTL
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Close stops the background JWKS refresh and waits for it. Authenticate keeps working with the
// keys already loaded; fetches it would start fail at once.
func (a *Authenticator) Close() {
	a.cancel()
	a.wg.Wait()
}

// Mode returns the mode of the configuration.
func (a *Authenticator) Mode() policyv1.JWTAuthentication_Mode { return a.mode }

// Authenticate verifies the bearer token of an Authorization header value (pass "" when the
// request has none; a token in any other header is not looked at). The scheme "Bearer" is matched
// without regard to case. ctx bounds the wait for a remote JWKS fetch. A token seen before and
// still valid is answered from the cache without a signature check.
func (a *Authenticator) Authenticate(ctx context.Context, authorization string) Result {
	token, ok := bearerToken(authorization)
	if !ok {
		return Result{Status: Missing, Reason: ReasonMissing}
	}
	now := a.now()
	if e, ok := a.cache.get(token, now); ok {
		return Result{Status: OK, Claims: e.claims, Subject: e.subject, Issuer: e.issuer}
	}
	gen := a.cache.generation()
	res, exp := a.verify(ctx, token)
	if res.Status == OK {
		a.cache.put(token, cacheEntry{claims: res.Claims, subject: res.Subject, issuer: res.Issuer}, exp, now, gen)
	}
	return res
}

// bearerToken returns the token of an Authorization value "Bearer TOKEN".
func bearerToken(h string) (string, bool) {
	h = strings.TrimSpace(h)
	const scheme = "bearer"
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) || (h[len(scheme)] != ' ' && h[len(scheme)] != '\t') {
		return "", false
	}
	token := strings.TrimLeft(h[len(scheme):], " \t")
	return token, token != ""
}

// invalid is the Result of a token refused for reason.
func invalid(reason string) Result { return Result{Status: Invalid, Reason: reason} }

// verify checks a token fully. exp is the token's expiry (zero when it has none).
func (a *Authenticator) verify(ctx context.Context, token string) (res Result, exp time.Time) {
	first := strings.IndexByte(token, '.')
	last := strings.LastIndexByte(token, '.')
	if first < 0 || first == last || strings.IndexByte(token[first+1:last], '.') >= 0 {
		return invalid(ReasonBadFormat), time.Time{}
	}
	headerPart, payloadPart, sigPart := token[:first], token[first+1:last], token[last+1:]

	headerJSON, err := base64.RawURLEncoding.DecodeString(headerPart)
	if err != nil {
		return invalid(ReasonHeaderBase64), time.Time{}
	}
	var header struct {
		Alg  any             `json:"alg"`
		Kid  any             `json:"kid"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(headerJSON, &header); err != nil {
		return invalid(ReasonHeaderJSON), time.Time{}
	}
	if header.Crit != nil {
		// RFC 7515 §4.1.11: a token whose crit names extensions the recipient does not
		// understand must be refused; mcpgate understands none (and crit may not name the
		// standard parameters).
		return invalid(ReasonHeaderCrit), time.Time{}
	}
	algName, ok := header.Alg.(string)
	if !ok {
		return invalid(ReasonHeaderAlg), time.Time{}
	}
	kid := ""
	if header.Kid != nil {
		if kid, ok = header.Kid.(string); !ok {
			return invalid(ReasonHeaderKid), time.Time{}
		}
	}
	alg, ok := lookupAlgorithm(algName)
	if !ok {
		return invalid(ReasonUnsupportedAlg), time.Time{}
	}

	payloadJSON, err := base64.RawURLEncoding.DecodeString(payloadPart)
	if err != nil {
		return invalid(ReasonPayloadBase64), time.Time{}
	}
	var claims gojwt.MapClaims
	if err := json.Unmarshal(payloadJSON, &claims); err != nil || claims == nil {
		return invalid(ReasonPayloadJSON), time.Time{}
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigPart)
	if err != nil {
		return invalid(ReasonSignatureBase64), time.Time{}
	}

	iss := ""
	if v, present := claims["iss"]; present {
		if iss, ok = v.(string); !ok {
			return invalid(ReasonIssuerNotString), time.Time{}
		}
	}
	p := a.provider(iss)
	if p == nil {
		return invalid(ReasonUnknownIssuer), time.Time{}
	}
	ks := p.inline
	if p.remote != nil {
		if ks, err = p.remote.get(ctx, a.base); err != nil {
			return invalid(ReasonFetchFailed), time.Time{}
		}
	}
	signed := token[:last]
	matched, err := ks.verify(kid, alg, algName, signed, sig)
	if !matched && p.remote != nil && kid != "" {
		// The issuer may have rotated its keys: fetch again (rate-limited) and retry.
		ferr := p.remote.refetch(ctx, a.base, false)
		if cur := p.remote.current(); cur != ks {
			matched, err = cur.verify(kid, alg, algName, signed, sig)
		}
		if !matched && ferr != nil && !errors.Is(ferr, errRateLimited) {
			// The keys that could match are out of reach: the fetch failed, not the token.
			return invalid(ReasonFetchFailed), time.Time{}
		}
	}
	if !matched {
		return invalid(ReasonNoMatchingKey), time.Time{}
	}
	if err != nil {
		return invalid(ReasonVerification), time.Time{}
	}

	if err := a.validator.Validate(claims); err != nil {
		switch {
		case errors.Is(err, gojwt.ErrTokenExpired):
			return invalid(ReasonExpired), time.Time{}
		case errors.Is(err, gojwt.ErrTokenNotValidYet), errors.Is(err, gojwt.ErrTokenUsedBeforeIssued):
			return invalid(ReasonNotYetValid), time.Time{}
		case errors.Is(err, gojwt.ErrTokenRequiredClaimMissing):
			// A token without exp would be valid for ever (and cached as long as the cache
			// keeps it).
			return invalid(ReasonMissingExp), time.Time{}
		default:
			return invalid(ReasonTimeClaimType), time.Time{}
		}
	}
	if len(p.audiences) > 0 {
		aud, err := claims.GetAudience()
		if err != nil {
			return invalid(ReasonAudienceType), time.Time{}
		}
		if !anyIn(aud, p.audiences) {
			return invalid(ReasonAudienceRejected), time.Time{}
		}
	}
	if e, err := claims.GetExpirationTime(); err == nil && e != nil {
		exp = e.Time
	}
	sub, _ := claims["sub"].(string)
	return Result{Status: OK, Claims: claims, Subject: sub, Issuer: iss}, exp
}

// provider returns the first provider whose issuer is iss (an empty issuer accepts any token).
func (a *Authenticator) provider(iss string) *provider {
	for _, p := range a.providers {
		if p.issuer == "" || p.issuer == iss {
			return p
		}
	}
	return nil
}

// anyIn reports whether one of have is in want.
func anyIn(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if h == w {
				return true
			}
		}
	}
	return false
}
