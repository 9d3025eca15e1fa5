package jwt

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"

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
// usable key. Errors name the key by index and kid, and the member at fault: `JWKS keys[0].n
// (kid "k1"): is not base64url without padding: ...`.
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
		if me := (*memberError)(nil); errors.As(err, &me) {
			return nil, fmt.Errorf("JWKS keys[%d].%s%s: %s", i, me.member, kidSuffix(raw), me.msg)
		}
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

// memberError is a JWK member at fault and what is wrong with it.
type memberError struct {
	member, msg string
}

func (e *memberError) Error() string { return e.member + ": " + e.msg }

// parseJWK parses one JWK. skip reports a key that is valid but not for signatures. The members
// it reads are checked first, so that an error names the member at fault (a *memberError);
// go-jose then builds the key and checks the certificate members (x5c, x5t, x5t#S256, x5u).
func parseJWK(raw json.RawMessage) (k key, skip bool, err error) {
	var m jwkMembers
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return key{}, false, errors.New("not a JSON object")
	}
	for _, name := range []string{"kid", "use", "alg", "x5u", "x5t", "x5t#S256"} {
		if _, err := m.str(name); err != nil {
			return key{}, false, err
		}
	}
	kty, err := m.str("kty")
	switch {
	case err != nil:
		return key{}, false, err
	case kty == "":
		return key{}, false, &memberError{"kty", "is required"}
	case kty != "RSA" && kty != "EC" && kty != "OKP":
		return key{}, false, &memberError{"kty", fmt.Sprintf("%q is not supported (want RSA, EC or OKP)", kty)}
	}
	for _, name := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"} { // RFC 7518 section 6
		if _, ok := m[name]; ok {
			return key{}, false, &memberError{name, "is private key material: publish only public keys"}
		}
	}
	kind, err := m.kind(kty)
	if err != nil {
		return key{}, false, err
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return key{}, false, err
	}
	if use, _ := m.str("use"); use == "enc" {
		return key{}, true, nil // its alg, if any, is an encryption algorithm
	}
	alg, _ := m.str("alg") // a string: checked above
	if alg != "" {
		a, ok := lookupAlgorithm(alg)
		if !ok {
			return key{}, false, &memberError{"alg", fmt.Sprintf("%q is not a supported signature algorithm", alg)}
		}
		if a.kind != kind {
			return key{}, false, &memberError{"alg", fmt.Sprintf("%q does not fit a %s key", alg, kind)}
		}
	}
	return key{kid: jwk.KeyID, alg: alg, kind: kind, pub: jwk.Key}, false, nil
}

// jwkMembers are the members of one JWK, undecoded.
type jwkMembers map[string]json.RawMessage

// str returns the string member name ("" when it is absent).
func (m jwkMembers) str(name string) (string, error) {
	v, ok := m[name]
	if !ok {
		return "", nil
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && plainJSONString(v[1:len(v)-1]) {
		return string(v[1 : len(v)-1]), nil // the common case, without a second decoder pass
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", &memberError{name, "must be a string"}
	}
	return s, nil
}

// plainJSONString reports whether b, the inside of a JSON string the decoder already read, holds
// no escape, quote or control byte: its text is then b itself.
func plainJSONString(b []byte) bool {
	for _, c := range b {
		if c == '\\' || c == '"' || c < 0x20 {
			return false
		}
	}
	return true
}

// bytes returns the required base64url member name, decoded; want is its length for a key of
// curve of (0: any length).
func (m jwkMembers) bytes(name string, want int, of string) ([]byte, error) {
	s, err := m.str(name)
	if err != nil {
		return nil, err
	}
	if s == "" {
		return nil, &memberError{name, "is required"}
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, &memberError{name, "is not base64url without padding: " + err.Error()}
	}
	if want != 0 && len(b) != want {
		return nil, &memberError{name, fmt.Sprintf("is %d bytes, want %d for %s", len(b), want, of)}
	}
	return b, nil
}

// kind checks the public key members of a key of type kty (RSA, EC or OKP) and returns the
// kind of key they make.
func (m jwkMembers) kind(kty string) (keyKind, error) {
	switch kty {
	case "RSA":
		n, err := m.bytes("n", 0, "")
		if err != nil {
			return 0, err
		}
		if bits := new(big.Int).SetBytes(n).BitLen(); bits > jose.MaxRSAModulusBits {
			return 0, &memberError{"n", fmt.Sprintf("a %d-bit modulus is larger than the %d bits supported", bits, jose.MaxRSAModulusBits)}
		}
		e, err := m.bytes("e", 0, "")
		if err != nil {
			return 0, err
		}
		if v := new(big.Int).SetBytes(e); !v.IsInt64() || v.Int64() < 2 || v.Int64() > math.MaxInt {
			return 0, &memberError{"e", v.String() + " is not an RSA exponent (2 or more)"}
		}
		return kindRSA, nil
	case "EC":
		crv, err := m.str("crv")
		if err != nil {
			return 0, err
		}
		var kind keyKind
		var curve ecdh.Curve
		var size int // of x and y (RFC 7518 section 6.2.1.2)
		switch crv {
		case "P-256":
			kind, curve, size = kindP256, ecdh.P256(), 32
		case "P-384":
			kind, curve, size = kindP384, ecdh.P384(), 48
		case "P-521":
			kind, curve, size = kindP521, ecdh.P521(), 66
		case "":
			return 0, &memberError{"crv", "is required"}
		default:
			return 0, &memberError{"crv", fmt.Sprintf("%q is not supported for an EC key (want P-256, P-384 or P-521)", crv)}
		}
		x, err := m.bytes("x", size, crv)
		if err != nil {
			return 0, err
		}
		y, err := m.bytes("y", size, crv)
		if err != nil {
			return 0, err
		}
		if _, err := curve.NewPublicKey(slices.Concat([]byte{4}, x, y)); err != nil {
			return 0, fmt.Errorf("x and y are not a point on %s", crv)
		}
		return kind, nil
	default: // OKP
		crv, err := m.str("crv")
		switch {
		case err != nil:
			return 0, err
		case crv == "":
			return 0, &memberError{"crv", "is required"}
		case crv != "Ed25519":
			return 0, &memberError{"crv", fmt.Sprintf("%q is not supported for an OKP key (want Ed25519)", crv)}
		}
		if _, err := m.bytes("x", ed25519.PublicKeySize, crv); err != nil {
			return 0, err
		}
		return kindEd25519, nil
	}
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
