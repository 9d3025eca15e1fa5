package translator

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"strings"
	"testing"
)

// TestEnvoyKeyProblem: the key types Envoy's TLS context serves (RSA of 2048 bits or more, ECDSA
// on P-256, P-384 or P-521) pass; others are refused with the reason.
func TestEnvoyKeyProblem(t *testing.T) {
	ec := func(c elliptic.Curve) any {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return &k.PublicKey
	}
	rsaKey := func(bits int) any {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return &k.PublicKey
	}
	edKey, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		key  any
		want string // a part of the problem, "" for none
	}{
		{"P-256", ec(elliptic.P256()), ""},
		{"P-384", ec(elliptic.P384()), ""},
		{"P-521", ec(elliptic.P521()), ""},
		{"P-224", ec(elliptic.P224()), "ECDSA key is on P-224"},
		{"RSA 2048", rsaKey(2048), ""},
		{"RSA 1024", rsaKey(1024), "RSA key has 1024 bits"},
		{"Ed25519", edKey, "ed25519.PublicKey"},
	} {
		got := envoyKeyProblem(&x509.Certificate{PublicKey: c.key})
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: problem %q, want %q", c.name, got, c.want)
		}
	}
	if got := envoyKeyProblem(nil); got == "" {
		t.Error("no certificate: no problem")
	}
}
