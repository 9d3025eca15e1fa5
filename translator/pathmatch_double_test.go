package translator

import (
	"math/rand/v2"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// emittedHCM is the double's reading of the connection manager the translator emits for a
// listener: its path normalization is the one normalizePath must reproduce.
func emittedHCM(t testing.TB) *xdsconf.HCM {
	t.Helper()
	gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "gw"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "mcpgate", Listeners: []gwv1.Listener{{Name: "http", Port: 8080, Protocol: gwv1.HTTPProtocolType}}}}
	out := Translate(&Resources{Gateways: []*gwv1.Gateway{gw}}, Options{})
	for _, k := range out.GatewayKeys() {
		for _, l := range out.Gateways[k].Listeners {
			cl, err := xdsconf.CompileListener(l)
			if err != nil {
				t.Fatal(err)
			}
			return cl.HCM
		}
	}
	t.Fatal("no listener")
	return nil
}

// checkAgainstDouble compares normalizePath with the double's copy of Envoy's normalization
// (test/envoydouble/xdsconf/path.go) on p, a path without query, fragment or ";" (refused
// before normalizePath).
func checkAgainstDouble(t testing.TB, hcm *xdsconf.HCM, p string) {
	want, action := hcm.NormalizePath(p)
	got, changes, ok := normalizePath(p)
	if ok != (action != xdsconf.PathReject) {
		t.Fatalf("%q: ok %v, the double's action %v", p, ok, action)
	}
	if !ok {
		return
	}
	if got != want {
		t.Fatalf("%q: normalized to %q, the double to %q", p, got, want)
	}
	if redirect := action == xdsconf.PathRedirect; redirect != (changes&changedEscapedSlash != 0) {
		t.Fatalf("%q: escaped slash change %v, the double redirects: %v", p, !redirect, redirect)
	}
	if strings.HasPrefix(p, "/") && (got == p) != (changes == 0) {
		t.Fatalf("%q: normalized to %q with changes %b", p, got, changes)
	}
}

// pathAlphabet is what normalization treats specially: separators, dots, escapes (of a dot, a
// slash, a backslash, an unreserved letter, NUL, invalid ones), characters it escapes, others.
const pathAlphabet = `/\.%2eEfF5cC4100 a~é`

// TestNormalizePathAgreesWithTheDouble compares normalizePath with the double on every path of
// up to 4 characters of pathAlphabet, and on random longer ones.
func TestNormalizePathAgreesWithTheDouble(t *testing.T) {
	hcm := emittedHCM(t)
	alpha := []byte(pathAlphabet)
	var walk func(prefix []byte, n int)
	walk = func(prefix []byte, n int) {
		checkAgainstDouble(t, hcm, string(prefix))
		checkAgainstDouble(t, hcm, "/"+string(prefix))
		if n == 0 {
			return
		}
		for _, c := range alpha {
			walk(append(prefix, c), n-1)
		}
	}
	walk(nil, 4)
	r := rand.New(rand.NewPCG(7, 11))
	for range 100000 {
		b := make([]byte, 5+r.IntN(20))
		for i := range b {
			b[i] = alpha[r.IntN(len(alpha))]
		}
		checkAgainstDouble(t, hcm, "/"+string(b))
	}
}

// FuzzNormalizePath explores beyond the alphabet: `go test -fuzz FuzzNormalizePath ./translator`.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/a//b", "/a/./b/../c", `/a\b`, "/%2e%2E/%2F%5c", "/%41%7e%00", "/a b/é", "//", "/%4%31"} {
		f.Add(s)
	}
	hcm := emittedHCM(f)
	f.Fuzz(func(t *testing.T, p string) {
		if strings.ContainsAny(p, "?#;") {
			t.Skip("a query, a fragment and path parameters are refused before normalizePath")
		}
		checkAgainstDouble(t, hcm, p)
	})
}
