package jwt

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

func TestParseJWKS(t *testing.T) {
	ks, err := ParseJWKS([]byte(labJWKS))
	if err != nil {
		t.Fatalf("lab JWKS: %v", err)
	}
	if ks.Len() != 1 || ks.keys[0].kid != "solo-public-key-001" || ks.keys[0].kind != kindRSA || ks.keys[0].alg != "RS256" {
		t.Fatalf("lab JWKS parsed as %+v", ks.keys)
	}

	rs, es, ed := newSigner(t, "RS256", "r"), newSigner(t, "ES384", "e"), newSigner(t, "EdDSA", "d")
	ks, err = ParseJWKS([]byte(jwks(t, rs, es, ed)))
	if err != nil {
		t.Fatal(err)
	}
	if ks.Len() != 3 {
		t.Fatalf("got %d keys, want 3", ks.Len())
	}

	private, err := json.Marshal(jose.JSONWebKey{Key: rs.priv, KeyID: "leak"})
	if err != nil {
		t.Fatal(err)
	}
	enc := strings.Replace(strings.Replace(string(rs.jwk(t)), `"use":"sig"`, `"use":"enc"`, 1), `"alg":"RS256"`, `"alg":"RSA-OAEP"`, 1)
	if !strings.Contains(enc, `"alg":"RSA-OAEP"`) {
		t.Fatalf("the encryption key %s has no encryption alg", enc)
	}
	withEnc, err := ParseJWKS([]byte(`{"keys":[` + enc + `,` + string(es.jwk(t)) + `]}`))
	if err != nil || withEnc.Len() != 1 || withEnc.keys[0].kid != "e" {
		t.Fatalf("an encryption key is not skipped: %v %+v", err, withEnc)
	}
	edJWK := string(ed.jwk(t))

	// the JWK of s with members set (nil: removed), alone in a set
	with := func(s *signer, set map[string]any) string {
		var m map[string]any
		if err := json.Unmarshal(s.jwk(t), &m); err != nil {
			t.Fatal(err)
		}
		for member, value := range set {
			if value == nil {
				delete(m, member)
			} else {
				m[member] = value
			}
		}
		b, err := json.Marshal(map[string]any{"keys": []any{m}})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// an EC P-384 point of the right size that is not on the curve
	offCurve := base64.RawURLEncoding.EncodeToString(make([]byte, 48))
	bad := []struct{ name, jwks, want string }{
		{"not JSON", `{"keys":`, "JWKS is not a JSON object"},
		{"array", `[]`, "JWKS is not a JSON object"},
		{"no keys", `{"kty":"RSA"}`, `JWKS has no "keys" array`},
		{"empty keys", `{"keys":[]}`, "JWKS has no usable signing key (RSA, EC or OKP Ed25519)"},
		{"only encryption keys", `{"keys":[` + enc + `]}`, "JWKS has no usable signing key (RSA, EC or OKP Ed25519)"},
		{"symmetric key", `{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}`, `JWKS keys[0].kty (kid "s"): "oct" is not supported (want RSA, EC or OKP)`},
		{"unknown kty", `{"keys":[` + edJWK + `,{"kty":"XYZ"}]}`, `JWKS keys[1].kty: "XYZ" is not supported (want RSA, EC or OKP)`},
		{"no kty", `{"keys":[{"kid":"x","n":"AQAB","e":"AQAB"}]}`, `JWKS keys[0].kty (kid "x"): is required`},
		{"kty not a string", `{"keys":[{"kty":1}]}`, `JWKS keys[0].kty: must be a string`},
		{"key not an object", `{"keys":[7]}`, "JWKS keys[0]: not a JSON object"},
		{"key null", `{"keys":[null]}`, "JWKS keys[0]: not a JSON object"},
		{"private key", `{"keys":[` + string(private) + `]}`, `JWKS keys[0].d (kid "leak"): is private key material: publish only public keys`},
		{"kid not a string", with(rs, map[string]any{"kid": 7}), `JWKS keys[0].kid: must be a string`},
		{"use not a string", with(rs, map[string]any{"use": true}), `JWKS keys[0].use (kid "r"): must be a string`},
		{"RSA without n", with(rs, map[string]any{"n": nil}), `JWKS keys[0].n (kid "r"): is required`},
		{"RSA n not base64url", with(rs, map[string]any{"n": "!!"}), `JWKS keys[0].n (kid "r"): is not base64url without padding: illegal base64 data at input byte 0`},
		{"RSA n padded", with(rs, map[string]any{"n": "AQAB=="}), `JWKS keys[0].n (kid "r"): is not base64url without padding: illegal base64 data at input byte 4`},
		{"RSA n not a string", with(rs, map[string]any{"n": 5}), `JWKS keys[0].n (kid "r"): must be a string`},
		{"RSA n too large", with(rs, map[string]any{"n": base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 513))}), `JWKS keys[0].n (kid "r"): a 4104-bit modulus is larger than the 4096 bits supported`},
		{"RSA without e", with(rs, map[string]any{"e": nil}), `JWKS keys[0].e (kid "r"): is required`},
		{"RSA e not base64url", with(rs, map[string]any{"e": "A+B"}), `JWKS keys[0].e (kid "r"): is not base64url without padding: illegal base64 data at input byte 1`},
		{"RSA e of 1", with(rs, map[string]any{"e": "AQ"}), `JWKS keys[0].e (kid "r"): 1 is not an RSA exponent (2 or more)`},
		{"RSA e too large", with(rs, map[string]any{"e": base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 9))}), `JWKS keys[0].e (kid "r"): 4722366482869645213695 is not an RSA exponent (2 or more)`},
		{"EC without crv", with(es, map[string]any{"crv": nil}), `JWKS keys[0].crv (kid "e"): is required`},
		{"EC P-192", with(es, map[string]any{"crv": "P-192"}), `JWKS keys[0].crv (kid "e"): "P-192" is not supported for an EC key (want P-256, P-384 or P-521)`},
		{"EC x not base64url", with(es, map[string]any{"x": "*"}), `JWKS keys[0].x (kid "e"): is not base64url without padding: illegal base64 data at input byte 0`},
		{"EC without y", with(es, map[string]any{"y": nil}), `JWKS keys[0].y (kid "e"): is required`},
		{"EC x short", with(es, map[string]any{"x": "AQ"}), `JWKS keys[0].x (kid "e"): is 1 bytes, want 48 for P-384`},
		{"EC y long", with(es, map[string]any{"y": base64.RawURLEncoding.EncodeToString(make([]byte, 66))}), `JWKS keys[0].y (kid "e"): is 66 bytes, want 48 for P-384`},
		{"EC point off the curve", with(es, map[string]any{"x": offCurve, "y": offCurve}), `JWKS keys[0] (kid "e"): x and y are not a point on P-384`},
		{"OKP X25519", `{"keys":[{"kty":"OKP","crv":"X25519","x":"AQ"}]}`, `JWKS keys[0].crv: "X25519" is not supported for an OKP key (want Ed25519)`},
		{"OKP without x", with(ed, map[string]any{"x": nil}), `JWKS keys[0].x (kid "d"): is required`},
		{"OKP x short", with(ed, map[string]any{"x": "AQ"}), `JWKS keys[0].x (kid "d"): is 1 bytes, want 32 for Ed25519`},
		{"alg not a string", with(ed, map[string]any{"alg": 256}), `JWKS keys[0].alg (kid "d"): must be a string`},
		{"alg for another key type", `{"keys":[` + strings.Replace(edJWK, `"alg":"EdDSA"`, `"alg":"RS256"`, 1) + `]}`, `JWKS keys[0].alg (kid "d"): "RS256" does not fit a OKP Ed25519 key`},
		{"alg not a signature algorithm", `{"keys":[` + strings.Replace(edJWK, `"alg":"EdDSA"`, `"alg":"HS256"`, 1) + `]}`, `JWKS keys[0].alg (kid "d"): "HS256" is not a supported signature algorithm`},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseJWKS([]byte(c.jwks))
			if err == nil {
				t.Fatal("accepted")
			}
			if got := err.Error(); got != c.want && !(strings.HasPrefix(c.want, "JWKS is not") && strings.HasPrefix(got, c.want)) {
				t.Fatalf("error %q, want %q", got, c.want)
			}
		})
	}
}

// TestMemberStrings: a JWK's string member reads the same with or without escapes (the plain
// ones skip the decoder), and a member that is no string is an error naming it.
func TestMemberStrings(t *testing.T) {
	m := jwkMembers{"plain": json.RawMessage(`"k1"`), "escaped": json.RawMessage(`"k\u0031"`),
		"quote": json.RawMessage(`"a\"b"`), "number": json.RawMessage(`1`), "empty": json.RawMessage(`""`)}
	for name, want := range map[string]string{"plain": "k1", "escaped": "k1", "quote": `a"b`, "empty": "", "absent": ""} {
		if got, err := m.str(name); err != nil || got != want {
			t.Errorf("str(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := m.str("number"); err == nil || err.Error() != "number: must be a string" {
		t.Errorf("str(number) = %v, want number: must be a string", err)
	}
}
