package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testIssuer is a second JWT provider the suite adds next to the lab's: its key is made per run.
type testIssuer struct {
	issuer string
	kid    string
	key    *rsa.PrivateKey
	// audience, when set, is the aud of the tokens it signs (token).
	audience string
}

func newTestIssuer() (*testIssuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("test issuer key: %w", err)
	}
	return &testIssuer{issuer: "e2e.mcpgate.test", kid: "e2e-test-key", key: key}, nil
}

// jwks is the issuer's public key as a JSON Web Key Set.
func (ti *testIssuer) jwks() string {
	b64 := base64.RawURLEncoding.EncodeToString
	set := map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": ti.kid, "use": "sig", "alg": "RS256",
		"n": b64(ti.key.N.Bytes()),
		"e": b64(big.NewInt(int64(ti.key.E)).Bytes()),
	}}}
	out, _ := json.MarshalIndent(set, "", "  ") // a map of strings always marshals
	return string(out)
}

// token signs a token for sub in org, valid for an hour, for the issuer's audience (none when
// unset).
func (ti *testIssuer) token(sub, org string) (string, error) {
	claims := jwt.MapClaims{
		"iss": ti.issuer,
		"sub": sub,
		"org": org,
		"exp": time.Now().Add(time.Hour).Unix(),
		"iat": time.Now().Unix(),
	}
	if ti.audience != "" {
		claims["aud"] = ti.audience
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = ti.kid
	s, err := t.SignedString(ti.key)
	if err != nil {
		return "", fmt.Errorf("sign test token: %w", err)
	}
	return s, nil
}
