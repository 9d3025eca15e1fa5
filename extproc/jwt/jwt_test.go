package jwt

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"reflect"
	"strings"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

const strict = policyv1.JWTAuthentication_STRICT

func TestLabTokenVerifiesWithLabJWKS(t *testing.T) {
	a := mustNew(t, inlineConfig(strict, "solo.io", labJWKS), Options{})
	r := a.Authenticate(t.Context(), "Bearer "+labToken)
	wantOK(t, r)
	if r.Subject != "user-id" || r.Issuer != "solo.io" {
		t.Errorf("subject %q issuer %q, want user-id solo.io", r.Subject, r.Issuer)
	}
	if r.Claims["org"] != "solo.io" || r.Claims["team"] != "team-id" {
		t.Errorf("claims %v lack org solo.io and team team-id", r.Claims)
	}
	llms, _ := r.Claims["llms"].(map[string]any)
	if models, _ := llms["openai"].([]any); len(models) != 1 || models[0] != "gpt-4o" {
		t.Errorf("nested claim llms.openai = %v, want [gpt-4o]", r.Claims["llms"])
	}
	if _, reject := a.Decide(r); reject {
		t.Error("Strict refuses the lab token")
	}
	// The same token with its payload's org changed no longer verifies.
	parts := segments(labToken)
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := strings.Replace(string(payload), `"org":"solo.io"`, `"org":"evil.io"`, 1)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	wantInvalid(t, a.Authenticate(t.Context(), bearer(strings.Join(parts, "."))), ReasonVerification)
}

func TestRefusals(t *testing.T) {
	now := time.Now()
	rs := newSigner(t, "RS256", "k1")
	other := newSigner(t, "RS256", "k1") // same kid, different key
	stranger := newSigner(t, "RS256", "k9")
	a := mustNew(t, inlineConfig(strict, "https://issuer.example", jwks(t, rs), "api", "mcp"), Options{})
	good := claimsAt(now, "https://issuer.example", gojwt.MapClaims{"aud": "mcp"})

	// alg none, made with golang-jwt's explicit unsafe marker.
	noneTok, err := gojwt.NewWithClaims(gojwt.SigningMethodNone, good).SignedString(gojwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	// HS256 whose secret is the RSA public key (PEM), the algorithm-confusion attack.
	der, err := x509.MarshalPKIXPublicKey(rs.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hsTok := gojwt.NewWithClaims(gojwt.SigningMethodHS256, good)
	hsTok.Header["kid"] = "k1"
	hs, err := hsTok.SignedString(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	valid := rs.sign(t, good)
	p := segments(valid)
	// A token valid but for its header's crit, signed with it.
	critTok := gojwt.NewWithClaims(gojwt.SigningMethodRS256, good)
	critTok.Header["kid"], critTok.Header["crit"], critTok.Header["exp"] = "k1", []string{"exp"}, now.Unix()
	crit, err := critTok.SignedString(rs.priv)
	if err != nil {
		t.Fatal(err)
	}
	noExp := claimsAt(now, "https://issuer.example", gojwt.MapClaims{"aud": "mcp"})
	delete(noExp, "exp")
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

	cases := []struct {
		name, authorization, reason string
	}{
		{"expired", bearer(rs.sign(t, claimsAt(now.Add(-3*time.Hour), "https://issuer.example", gojwt.MapClaims{"aud": "mcp"}))), ReasonExpired},
		{"not yet valid", bearer(rs.sign(t, claimsAt(now, "https://issuer.example", gojwt.MapClaims{"aud": "mcp", "nbf": now.Add(10 * time.Minute).Unix()}))), ReasonNotYetValid},
		{"issued in the future", bearer(rs.sign(t, claimsAt(now, "https://issuer.example", gojwt.MapClaims{"aud": "mcp", "iat": now.Add(10 * time.Minute).Unix()}))), ReasonNotYetValid},
		{"no exp", bearer(rs.sign(t, noExp)), ReasonMissingExp},
		{"crit header", bearer(crit), ReasonHeaderCrit},
		{"exp not a number", bearer(rs.sign(t, claimsAt(now, "https://issuer.example", gojwt.MapClaims{"aud": "mcp", "exp": "tomorrow"}))), ReasonTimeClaimType},
		{"wrong issuer", bearer(rs.sign(t, claimsAt(now, "https://evil.example", gojwt.MapClaims{"aud": "mcp"}))), ReasonUnknownIssuer},
		{"no issuer", bearer(rs.sign(t, gojwt.MapClaims{"sub": "alice", "aud": "mcp"})), ReasonUnknownIssuer},
		{"issuer not a string", bearer(rs.sign(t, claimsAt(now, "", gojwt.MapClaims{"iss": 7, "aud": "mcp"}))), ReasonIssuerNotString},
		{"wrong audience", bearer(rs.sign(t, claimsAt(now, "https://issuer.example", gojwt.MapClaims{"aud": []string{"other", "web"}}))), ReasonAudienceRejected},
		{"no audience", bearer(rs.sign(t, claimsAt(now, "https://issuer.example", nil))), ReasonAudienceRejected},
		{"audience not a string", bearer(rs.sign(t, claimsAt(now, "https://issuer.example", gojwt.MapClaims{"aud": []any{"mcp", 3}}))), ReasonAudienceType},
		{"unknown kid", bearer(stranger.sign(t, good)), ReasonNoMatchingKey},
		{"bad signature", bearer(other.sign(t, good)), ReasonVerification},
		{"alg none", bearer(noneTok), ReasonUnsupportedAlg},
		{"HS256 with the RSA public key as secret", bearer(hs), ReasonUnsupportedAlg},
		{"one segment", bearer("abc"), ReasonBadFormat},
		{"two segments", bearer(p[0] + "." + p[1]), ReasonBadFormat},
		{"four segments", bearer(valid + ".x"), ReasonBadFormat},
		{"header not base64", bearer("!!." + p[1] + "." + p[2]), ReasonHeaderBase64},
		{"header not JSON", bearer(enc("nope") + "." + p[1] + "." + p[2]), ReasonHeaderJSON},
		{"header without alg", bearer(enc(`{"typ":"JWT"}`) + "." + p[1] + "." + p[2]), ReasonHeaderAlg},
		{"kid not a string", bearer(enc(`{"alg":"RS256","kid":5}`) + "." + p[1] + "." + p[2]), ReasonHeaderKid},
		{"unknown alg", bearer(enc(`{"alg":"XX1"}`) + "." + p[1] + "." + p[2]), ReasonUnsupportedAlg},
		{"payload not base64", bearer(p[0] + ".%%." + p[2]), ReasonPayloadBase64},
		{"payload not JSON", bearer(p[0] + "." + enc("[1,2]") + "." + p[2]), ReasonPayloadJSON},
		{"payload null", bearer(p[0] + "." + enc("null") + "." + p[2]), ReasonPayloadJSON},
		{"signature not base64", bearer(p[0] + "." + p[1] + ".***"), ReasonSignatureBase64},
		{"empty signature", bearer(p[0] + "." + p[1] + "."), ReasonVerification},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := a.Authenticate(t.Context(), c.authorization)
			wantInvalid(t, r, c.reason)
			ans, reject := a.Decide(r)
			if !reject {
				t.Fatal("Strict did not refuse")
			}
			wantStatus := 401
			if c.reason == ReasonAudienceRejected {
				wantStatus = 403
			}
			want := Answer{Status: wantStatus, Body: c.reason, Headers: []Header{
				{"www-authenticate", `Bearer realm="mcpgate", error="invalid_token"`},
				{"content-type", "text/plain"},
			}}
			if !reflect.DeepEqual(ans, want) {
				t.Fatalf("answer %+v, want %+v", ans, want)
			}
		})
	}
	t.Run("the valid token passes", func(t *testing.T) {
		wantOK(t, a.Authenticate(t.Context(), bearer(valid)))
	})
	t.Run("expiry within the clock skew passes", func(t *testing.T) {
		wantOK(t, a.Authenticate(t.Context(), bearer(rs.sign(t, claimsAt(now, "https://issuer.example", gojwt.MapClaims{"aud": "mcp", "exp": now.Add(-30 * time.Second).Unix()})))))
	})
	t.Run("nbf within the clock skew passes", func(t *testing.T) {
		wantOK(t, a.Authenticate(t.Context(), bearer(rs.sign(t, claimsAt(now, "https://issuer.example", gojwt.MapClaims{"aud": "api", "nbf": now.Add(30 * time.Second).Unix()})))))
	})
}

func TestMissingToken(t *testing.T) {
	rs := newSigner(t, "RS256", "k1")
	a := mustNew(t, inlineConfig(strict, "iss", jwks(t, rs)), Options{})
	tok := rs.sign(t, claimsAt(time.Now(), "iss", nil))
	// (A token sent in another header than Authorization never reaches Authenticate: ext_proc's
	// TestJWTAndCEL.)
	for name, authorization := range map[string]string{
		"empty":                         "",
		"scheme only":                   "Bearer",
		"scheme and spaces":             "Bearer   ",
		"another scheme":                "Basic " + tok,
		"no scheme":                     tok,
		"scheme glued to token":         "Bearer" + tok,
		"token as query-like parameter": "access_token=" + tok,
	} {
		t.Run(name, func(t *testing.T) {
			r := a.Authenticate(t.Context(), authorization)
			if r.Status != Missing || r.Reason != ReasonMissing || r.Claims != nil {
				t.Fatalf("got %+v, want missing", r)
			}
			ans, reject := a.Decide(r)
			want := Answer{Status: 401, Body: "Jwt is missing", Headers: []Header{
				{"www-authenticate", `Bearer realm="mcpgate"`},
				{"content-type", "text/plain"},
			}}
			if !reject || !reflect.DeepEqual(ans, want) {
				t.Fatalf("Decide = %+v %v, want %+v true", ans, reject, want)
			}
		})
	}
	for _, authorization := range []string{"bearer " + tok, "BEARER " + tok, "  Bearer \t" + tok + "  "} {
		wantOK(t, a.Authenticate(t.Context(), authorization))
	}
}

func TestAlgorithms(t *testing.T) {
	now := time.Now()
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			s := newSigner(t, alg, "kid-"+alg)
			a := mustNew(t, inlineConfig(strict, "iss", jwks(t, s)), Options{})
			wantOK(t, a.Authenticate(t.Context(), bearer(s.sign(t, claimsAt(now, "iss", nil)))))
		})
	}
	t.Run("no kid: every key that fits the alg is tried", func(t *testing.T) {
		rs1, rs2 := newSigner(t, "RS256", ""), newSigner(t, "RS256", "")
		es, ed := newSigner(t, "ES256", ""), newSigner(t, "EdDSA", "")
		a := mustNew(t, inlineConfig(strict, "iss", jwks(t, rs1, es, rs2, ed)), Options{CacheSize: -1})
		for _, s := range []*signer{rs1, rs2, es, ed} {
			wantOK(t, a.Authenticate(t.Context(), bearer(s.sign(t, claimsAt(now, "iss", nil)))))
		}
		// A token with a kid still verifies with a key that publishes none.
		s := *rs2
		s.kid = "whatever"
		wantOK(t, a.Authenticate(t.Context(), bearer(s.sign(t, claimsAt(now, "iss", nil)))))
	})
	t.Run("a key pinned to RS256 does not verify PS256", func(t *testing.T) {
		rs := newSigner(t, "RS256", "k")
		a := mustNew(t, inlineConfig(strict, "iss", jwks(t, rs)), Options{})
		ps := *rs
		ps.method = gojwt.SigningMethodPS256
		wantInvalid(t, a.Authenticate(t.Context(), bearer(ps.sign(t, claimsAt(now, "iss", nil)))), ReasonNoMatchingKey)
	})
	t.Run("an ES256 token is not checked with a P-384 key", func(t *testing.T) {
		es384 := newSigner(t, "ES384", "k")
		es384.alg = ""
		a := mustNew(t, inlineConfig(strict, "iss", jwks(t, es384)), Options{})
		es256 := newSigner(t, "ES256", "k")
		wantInvalid(t, a.Authenticate(t.Context(), bearer(es256.sign(t, claimsAt(now, "iss", nil)))), ReasonNoMatchingKey)
	})
}

func TestProviders(t *testing.T) {
	now := time.Now()
	s1, s2 := newSigner(t, "RS256", "a"), newSigner(t, "ES256", "b")
	cfg := &policyv1.JWTAuthentication{Providers: []*policyv1.JWTProvider{
		{Issuer: "one", Jwks: &policyv1.JWTProvider_InlineJwks{InlineJwks: jwks(t, s1)}},
		{Issuer: "two", Audiences: []string{"mcp"}, Jwks: &policyv1.JWTProvider_InlineJwks{InlineJwks: jwks(t, s2)}},
		{Issuer: "two", Jwks: &policyv1.JWTProvider_InlineJwks{InlineJwks: jwks(t, s1)}},
	}}
	a := mustNew(t, cfg, Options{})
	wantOK(t, a.Authenticate(t.Context(), bearer(s1.sign(t, claimsAt(now, "one", nil)))))
	wantOK(t, a.Authenticate(t.Context(), bearer(s2.sign(t, claimsAt(now, "two", gojwt.MapClaims{"aud": "mcp"})))))
	// The first provider of issuer "two" decides: its audience rule applies, its keys verify.
	wantInvalid(t, a.Authenticate(t.Context(), bearer(s2.sign(t, claimsAt(now, "two", nil)))), ReasonAudienceRejected)
	wantInvalid(t, a.Authenticate(t.Context(), bearer(s1.sign(t, claimsAt(now, "two", gojwt.MapClaims{"aud": "mcp"})))), ReasonNoMatchingKey)
	// A key of provider one does not verify a token of issuer one signed by provider two's key.
	wantInvalid(t, a.Authenticate(t.Context(), bearer(s2.sign(t, claimsAt(now, "one", nil)))), ReasonNoMatchingKey)

	t.Run("an empty issuer accepts any iss", func(t *testing.T) {
		a := mustNew(t, inlineConfig(strict, "", jwks(t, s1)), Options{})
		r := a.Authenticate(t.Context(), bearer(s1.sign(t, claimsAt(now, "anyone", nil))))
		wantOK(t, r)
		if r.Issuer != "anyone" {
			t.Errorf("issuer %q", r.Issuer)
		}
	})
}

func TestModes(t *testing.T) {
	now := time.Now()
	s := newSigner(t, "ES256", "k")
	keys := jwks(t, s)
	ok := bearer(s.sign(t, claimsAt(now, "iss", gojwt.MapClaims{"aud": "mcp"})))
	bad := bearer(s.sign(t, claimsAt(now.Add(-2*time.Hour), "iss", gojwt.MapClaims{"aud": "mcp"})))
	wrongAud := bearer(s.sign(t, claimsAt(now, "iss", gojwt.MapClaims{"aud": "web"})))
	type want struct {
		reject bool
		status int
	}
	cases := []struct {
		mode                          policyv1.JWTAuthentication_Mode
		missing, invalid, ok, forbids want
	}{
		{policyv1.JWTAuthentication_STRICT, want{true, 401}, want{true, 401}, want{}, want{true, 403}},
		{policyv1.JWTAuthentication_OPTIONAL, want{}, want{true, 401}, want{}, want{true, 403}},
		{policyv1.JWTAuthentication_PERMISSIVE, want{}, want{}, want{}, want{}},
		{policyv1.JWTAuthentication_Mode(42), want{true, 401}, want{true, 401}, want{}, want{true, 403}},
	}
	for _, c := range cases {
		t.Run(c.mode.String(), func(t *testing.T) {
			a := mustNew(t, inlineConfig(c.mode, "iss", keys, "mcp"), Options{})
			for name, in := range map[string]struct {
				authorization string
				want          want
			}{"missing": {"", c.missing}, "invalid": {bad, c.invalid}, "ok": {ok, c.ok}, "audience": {wrongAud, c.forbids}} {
				r := a.Authenticate(t.Context(), in.authorization)
				ans, reject := a.Decide(r)
				if reject != in.want.reject || ans.Status != in.want.status {
					t.Errorf("%s: Decide = %d %v, want %d %v", name, ans.Status, reject, in.want.status, in.want.reject)
				}
				if (r.Claims != nil) != (r.Status == OK) {
					t.Errorf("%s: claims %v with status %v", name, r.Claims, r.Status)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  *policyv1.JWTAuthentication
		want string
	}{
		{"nil", nil, "no configuration"},
		{"no providers", &policyv1.JWTAuthentication{}, "no providers"},
		{"bad inline", inlineConfig(strict, "https://idp.example", `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`), `jwt provider 0 (issuer "https://idp.example"): inline JWKS: JWKS keys[0].kty: "oct" is not supported`},
		{"no jwks", &policyv1.JWTAuthentication{Providers: []*policyv1.JWTProvider{{Issuer: "x"}}}, `jwt provider 0 (issuer "x"): no JWKS`},
		{"relative url", remoteConfig("x", "/keys", 0), `jwt provider 0 (issuer "x"): remote JWKS url "/keys": want an absolute http or https URL`},
		{"ftp url", remoteConfig("x", "ftp://idp/keys", 0), "want an absolute http or https URL"},
		{"no host", remoteConfig("x", "https://", 0), `"https://": want an absolute http or https URL with a host`},
		{"bad host", remoteConfig("x", "https://[::1/jwks", 0), `"https://[::1/jwks": missing ']' in host`},
		{"port out of range", remoteConfig("x", "http://idp.example:99999/jwks", 0), "port 99999: want 1 to 65535"},
		{"userinfo", remoteConfig("x", "https://user:s3cret@idp.example/jwks", 0), `"https://REDACTED@idp.example/jwks": userinfo (user:password@) is not allowed`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := New(c.cfg, Options{})
			if err == nil {
				a.Close()
				t.Fatal("New accepted it")
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error %q does not contain %q (or shows a credential)", err, c.want)
			}
		})
	}
}
