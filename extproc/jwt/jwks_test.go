package jwt

import (
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
	enc := strings.Replace(string(rs.jwk(t)), `"use":"sig"`, `"use":"enc"`, 1)
	withEnc, err := ParseJWKS([]byte(`{"keys":[` + enc + `,` + string(es.jwk(t)) + `]}`))
	if err != nil || withEnc.Len() != 1 || withEnc.keys[0].kid != "e" {
		t.Fatalf("an encryption key is not skipped: %v %+v", err, withEnc)
	}
	edJWK := string(ed.jwk(t))

	bad := []struct{ name, jwks, want string }{
		{"not JSON", `{"keys":`, "JWKS is not a JSON object"},
		{"array", `[]`, "JWKS is not a JSON object"},
		{"no keys", `{"kty":"RSA"}`, `JWKS has no "keys" array`},
		{"empty keys", `{"keys":[]}`, "no usable signing key"},
		{"only encryption keys", `{"keys":[` + enc + `]}`, "no usable signing key"},
		{"symmetric key", `{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}`, `JWKS keys[0] (kid "s"): kty "oct" is not supported (want RSA, EC or OKP)`},
		{"unknown kty", `{"keys":[` + edJWK + `,{"kty":"XYZ"}]}`, `JWKS keys[1]: kty "XYZ" is not supported`},
		{"no kty", `{"keys":[{"kid":"x","n":"AQAB","e":"AQAB"}]}`, `keys[0] (kid "x"): kty is missing`},
		{"key not an object", `{"keys":[7]}`, "keys[0]: not a JSON object"},
		{"private key", `{"keys":[` + string(private) + `]}`, `keys[0] (kid "leak"): contains private key material`},
		{"RSA without n", `{"keys":[{"kty":"RSA","kid":"r","e":"AQAB"}]}`, `keys[0] (kid "r"): `},
		{"EC point off the curve", `{"keys":[{"kty":"EC","crv":"P-256","x":"AQ","y":"AQ"}]}`, "keys[0]: "},
		{"OKP X25519", `{"keys":[{"kty":"OKP","crv":"X25519","x":"AQ"}]}`, "keys[0]: "},
		{"alg for another key type", `{"keys":[` + strings.Replace(edJWK, `"alg":"EdDSA"`, `"alg":"RS256"`, 1) + `]}`, `keys[0] (kid "d"): alg "RS256" does not fit a OKP Ed25519 key`},
		{"alg not a signature algorithm", `{"keys":[` + strings.Replace(edJWK, `"alg":"EdDSA"`, `"alg":"HS256"`, 1) + `]}`, `alg "HS256" is not a supported signature algorithm`},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseJWKS([]byte(c.jwks))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}
