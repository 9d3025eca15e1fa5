package translator

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/pki"
)

// TestCACertificates: a CA bundle loads as Envoy loads a trusted_ca: every CERTIFICATE block,
// text around them ignored; a block that does not decode, one that is not a certificate, one
// that does not parse and a bundle without a certificate are refused with the reason.
func TestCACertificates(t *testing.T) {
	var pems []string
	for range 2 {
		ca, err := pki.NewCA(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		pems = append(pems, string(ca.CertPEM))
	}
	for _, tc := range []struct {
		name, data string
		certs      int
		problem    string
	}{
		{"one", pems[0], 1, ""},
		{"two with text around them", "# ours\n" + pems[0] + "comment\n" + pems[1] + "\n", 2, ""},
		{"empty", "", 0, "holds no PEM certificate"},
		{"not PEM", "just text\n", 0, "holds no PEM certificate"},
		{"bad base64 after a good one", pems[0] + "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n", 0, "does not decode"},
		{"no END line", strings.TrimSuffix(pems[0], "-----END CERTIFICATE-----\n"), 0, "does not decode"},
		{"a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0, "type PRIVATE KEY (block 1)"},
		{"not DER", pems[0] + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 0, "certificate 2 does not parse"},
	} {
		certs, problem := caCertificates([]byte(tc.data))
		if len(certs) != tc.certs || (tc.problem == "") != (problem == "") || !strings.Contains(problem, tc.problem) {
			t.Errorf("%s: %d certificates, problem %q; want %d, %q", tc.name, len(certs), problem, tc.certs, tc.problem)
		}
	}
}
