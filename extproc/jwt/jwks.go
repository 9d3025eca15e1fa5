package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
	gojwt "github.com/golang-jwt/jwt/v5"
)

// keyKind is the family of a public key, which decides the algorithms it can verify.
type keyKind uint8

const (
	kindRSA keyKind = iota + 1
	kindP256
	kindP384
	kindP521
	kindEd25519
)

// String names the kind as a JWK would (kty and crv).
func (k keyKind) String() string {
	switch k {
	case kindRSA:
		return "RSA"
	case kindP256:
		return "EC P-256"
	case kindP384:
		return "EC P-384"
	case kindP521:
		return "EC P-521"
	case kindEd25519:
		return "OKP Ed25519"
	}
	return "unknown"
}

// algorithm is a signature algorithm this package accepts: the golang-jwt method that verifies
// it and the kind of key it needs.
type algorithm struct {
	method gojwt.SigningMethod
	kind   keyKind
}

// lookupAlgorithm returns the algorithm of a JOSE "alg" name. Only asymmetric signatures are
// accepted: "none" and the HMAC family (HS256...) are refused, so a public key can never be
// used as an HMAC secret.
func lookupAlgorithm(name string) (algorithm, bool) {
	switch name {
	case "RS256":
		return algorithm{gojwt.SigningMethodRS256, kindRSA}, true
	case "RS384":
		return algorithm{gojwt.SigningMethodRS384, kindRSA}, true
	case "RS512":
		return algorithm{gojwt.SigningMethodRS512, kindRSA}, true
	case "PS256":
		return algorithm{gojwt.SigningMethodPS256, kindRSA}, true
	case "PS384":
		return algorithm{gojwt.SigningMethodPS384, kindRSA}, true
	case "PS512":
		return algorithm{gojwt.SigningMethodPS512, kindRSA}, true
	case "ES256":
		return algorithm{gojwt.SigningMethodES256, kindP256}, true
	case "ES384":
		return algorithm{gojwt.SigningMethodES384, kindP384}, true
	case "ES512":
		return algorithm{gojwt.SigningMethodES512, kindP521}, true
	case "EdDSA":
		return algorithm{gojwt.SigningMethodEdDSA, kindEd25519}, true
	}
	return algorithm{}, false
}

// key is one verification key of a KeySet.
type key struct {
	kid  string
	alg  string // "" when the JWK does not pin an algorithm
	kind keyKind
	pub  any // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// KeySet is a parsed JSON Web Key Set: the public keys that verify token signatures. It is
// immutable and safe for concurrent use.
type KeySet struct {
	keys []key
}

// Len returns the number of signing keys in the set.
func (s *KeySet) Len() int { return len(s.keys) }

// ParseJWKS parses a JSON Web Key Set (RFC 7517) and keeps its signature keys. It is the one parser
// of this package: the translator calls it to validate an inline JWKS, the Authenticator uses it
// for inline and fetched sets. Supported keys are RSA, EC (P-256, P-384, P-521) and OKP (Ed25519);
// keys whose "use" is "enc" are skipped. It fails on JSON that is not a key set, on a key of
// another kty (e.g. "oct": symmetric keys are never accepted), on a key that does not parse, on a
// key with private material, on a key whose "alg" does not fit its type, and on a set with no
// usable key. Errors name the key by index and kid.
func ParseJWKS(data []byte) (*KeySet, error) {
	var doc struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("JWKS is not a JSON object with a \"keys\" array: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New("JWKS has no \"keys\" array")
	}
	set := &KeySet{keys: make([]key, 0, len(*doc.Keys))}
	for i, raw := range *doc.Keys {
		k, skip, err := parseJWK(raw)
		if err != nil {
			return nil, fmt.Errorf("JWKS keys[%d]%s: %w", i, kidSuffix(raw), err)
		}
		if !skip {
			set.keys = append(set.keys, k)
		}
	}
	if len(set.keys) == 0 {
		return nil, errors.New("JWKS has no usable signing key (RSA, EC or OKP Ed25519)")
	}
	return set, nil
}

// kidSuffix returns ` (kid "X")` for error messages when the raw key has a string kid.
func kidSuffix(raw json.RawMessage) string {
	var probe struct {
		Kid string `json:"kid"`
	}
	if json.Unmarshal(raw, &probe) != nil || probe.Kid == "" {
		return ""
	}
	return fmt.Sprintf(" (kid %q)", probe.Kid)
}

// parseJWK parses one JWK. skip reports a key that is valid but not for signatures.
func parseJWK(raw json.RawMessage) (k key, skip bool, err error) {
	var probe struct {
		Kty string `json:"kty"`
		Use string `json:"use"`
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return key{}, false, fmt.Errorf("not a JSON object with string kty, use and alg: %w", err)
	}
	switch probe.Kty {
	case "RSA", "EC", "OKP":
	case "":
		return key{}, false, errors.New("kty is missing")
	default:
		return key{}, false, fmt.Errorf("kty %q is not supported (want RSA, EC or OKP)", probe.Kty)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return key{}, false, err
	}
	if !jwk.IsPublic() {
		return key{}, false, errors.New("contains private key material: publish only public keys")
	}
	if probe.Use == "enc" {
		return key{}, true, nil
	}
	k = key{kid: jwk.KeyID, alg: probe.Alg, pub: jwk.Key}
	switch pub := jwk.Key.(type) {
	case *rsa.PublicKey:
		k.kind = kindRSA
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			k.kind = kindP256
		case elliptic.P384():
			k.kind = kindP384
		case elliptic.P521():
			k.kind = kindP521
		default:
			return key{}, false, fmt.Errorf("EC curve %s is not supported", pub.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		k.kind = kindEd25519
	default:
		return key{}, false, fmt.Errorf("key type %T is not supported", jwk.Key)
	}
	if k.alg != "" {
		a, ok := lookupAlgorithm(k.alg)
		if !ok {
			return key{}, false, fmt.Errorf("alg %q is not a supported signature algorithm", k.alg)
		}
		if a.kind != k.kind {
			return key{}, false, fmt.Errorf("alg %q does not fit a %s key", k.alg, k.kind)
		}
	}
	return k, false, nil
}

// verify checks sig over signed with the keys that can have made it: a key fits when its type
// fits alg, its own alg (if any) equals alg, and, when the token names a kid, its kid (if any)
// equals it. matched is false when no key fits; otherwise err is nil when one fitting key
// verifies the signature.
func (s *KeySet) verify(kid string, alg algorithm, algName, signed string, sig []byte) (matched bool, err error) {
	err = gojwt.ErrTokenSignatureInvalid
	for i := range s.keys {
		k := &s.keys[i]
		if k.kind != alg.kind || (k.alg != "" && k.alg != algName) || (kid != "" && k.kid != "" && k.kid != kid) {
			continue
		}
		matched = true
		if err = alg.method.Verify(signed, sig, k.pub); err == nil {
			return true, nil
		}
	}
	return matched, err
}
