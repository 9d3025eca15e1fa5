package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	gojwt "github.com/golang-jwt/jwt/v5"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// The lab's inline JWKS (step 6) and DEV_TOKEN (step 8) of shared/seed/mcp-connectivity-lab.md,
// verbatim, the JWKS with the indentation of its YAML block scalar.
const (
	labJWKS = `{
  "keys": [
    {
      "kty": "RSA",
      "kid": "solo-public-key-001",
      "n": "vlmc5pb-jYaOq75Y4r91AC2iuS9B0sm6sxzRm3oOG7nIt2F1hHd4AKll2jd6BZg437qvsLdREnbnVrr8kU0drmJNPHL-xbsTz_cQa95GuKb6AI6osAaUAEL3dPjuoqkGNRe1sAJyOi48qtcbV0kPWcwFmCV0-OiqliCms12jrd1PSI_LYiNc3GcutpxY6BiHkbxxNeIuWDxE-i_Obq8EhhGkwha1KVUvLHV-EwD4M_AY8BegGsX-sjoChXOxyueu_ReqWV227I-FTKwMnjwWW0BQkeI6g1w1WqADmtKZ2sLamwGUJgWt4ZgIyhQ-iQfeN1WN2iupTWa5JAsw--CQJw",
      "e": "AQAB",
      "use": "sig",
      "alg": "RS256"
    }
  ]
}
`
	labToken = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InNvbG8tcHVibGljLWtleS0wMDEifQ.eyJpc3MiOiJzb2xvLmlvIiwib3JnIjoic29sby5pbyIsInN1YiI6InVzZXItaWQiLCJ0ZWFtIjoidGVhbS1pZCIsImV4cCI6MjA3OTU1NjEwNCwibGxtcyI6eyJvcGVuYWkiOlsiZ3B0LTRvIl19fQ.e49g9XE6yrttR9gQAPpT_qcWVKe-bO6A7yJarMDCMCh8PhYs67br00wT6v0Wt8QXMMN09dd8UUEjTunhXqdkF5oeRMXiyVjpTPY4CJeoF1LfKhgebVkJeX8kLhqBYbMXp3cxr2GAmc3gkNfS2XnL2j-bowtVzwNqVI5D8L0heCpYO96xsci37pFP8jz6r5pRNZ597AT5bnYaeu7dHO0a5VGJqiClSyX9lwgVCXaK03zD1EthwPoq34a7MwtGy2mFS_pD1MTnPK86QfW10LCHxtahzGHSQ4jfiL-zp13s8MyDgTkbtanCk_dxURIyynwX54QJC_o5X7ooDc3dxbd8Cw"
)

// signer is a key pair generated for a test, with the JOSE names it signs under.
type signer struct {
	kid    string
	alg    string // alg published in the JWK; "" to publish none
	method gojwt.SigningMethod
	priv   crypto.Signer
}

// newSigner generates a key for method ("RS256", "ES384", "EdDSA"...).
func newSigner(t testing.TB, method, kid string) *signer {
	t.Helper()
	m := gojwt.GetSigningMethod(method)
	var priv crypto.Signer
	var err error
	switch method[:2] {
	case "RS", "PS":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES":
		curve := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[method]
		priv, err = ecdsa.GenerateKey(curve, rand.Reader)
	case "Ed":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no key type for %s", method)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, alg: method, method: m, priv: priv}
}

// jwk returns the public JWK of s as JSON.
func (s *signer) jwk(t testing.TB) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: s.priv.Public(), KeyID: s.kid, Algorithm: s.alg, Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwks returns a key set of the public keys of signers.
func jwks(t testing.TB, signers ...*signer) string {
	t.Helper()
	keys := make([]json.RawMessage, 0, len(signers))
	for _, s := range signers {
		keys = append(keys, s.jwk(t))
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sign returns a token over claims, with the signer's kid in the header unless it is "".
func (s *signer) sign(t testing.TB, claims gojwt.MapClaims) string {
	t.Helper()
	tok := gojwt.NewWithClaims(s.method, claims)
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	out, err := tok.SignedString(s.priv)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// claimsAt returns iss/sub/exp claims for a token valid around now, plus extra.
func claimsAt(now time.Time, iss string, extra gojwt.MapClaims) gojwt.MapClaims {
	c := gojwt.MapClaims{"iss": iss, "sub": "alice", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// inlineConfig is a policy with one inline provider.
func inlineConfig(mode policyv1.JWTAuthentication_Mode, issuer, keySet string, audiences ...string) *policyv1.JWTAuthentication {
	return &policyv1.JWTAuthentication{
		Mode: mode,
		Providers: []*policyv1.JWTProvider{{
			Issuer:    issuer,
			Audiences: audiences,
			Jwks:      &policyv1.JWTProvider_InlineJwks{InlineJwks: keySet},
		}},
	}
}

// mustNew builds an Authenticator and closes it when the test ends.
func mustNew(t testing.TB, cfg *policyv1.JWTAuthentication, opts Options) *Authenticator {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// bearer is the Authorization value of token.
func bearer(token string) string { return "Bearer " + token }

// wantInvalid fails unless r is Invalid for reason.
func wantInvalid(t *testing.T, r Result, reason string) {
	t.Helper()
	if r.Status != Invalid || r.Reason != reason {
		t.Fatalf("got %v %q, want invalid %q", r.Status, r.Reason, reason)
	}
	if r.Claims != nil {
		t.Fatalf("invalid result carries claims %v", r.Claims)
	}
}

// wantOK fails unless r is OK.
func wantOK(t *testing.T, r Result) {
	t.Helper()
	if r.Status != OK {
		t.Fatalf("got %v %q, want ok", r.Status, r.Reason)
	}
}

// segments splits a token for tests that tamper with it.
func segments(tok string) []string { return strings.Split(tok, ".") }
