package xdsconf

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/pki"
)

// TestSANMatcher: as Envoy's certificate validator, a DNS matcher compares DNS SANs only (a
// wildcard SAN covers one label) and an IP_ADDRESS matcher IP SANs only.
func TestSANMatcher(t *testing.T) {
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert := func(names ...string) *x509.Certificate {
		c, _, err := ca.IssueServer(names, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(c)
		x, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	byName, byIP, wild := cert("xds.mcpgate.svc"), cert("10.0.0.7"), cert("*.mcpgate.svc")
	for _, c := range []struct {
		m    sanMatcher
		cert *x509.Certificate
		want bool
	}{
		{sanMatcher{exact: "xds.mcpgate.svc"}, byName, true},
		{sanMatcher{exact: "XDS.mcpgate.svc"}, byName, true},
		{sanMatcher{exact: "other.mcpgate.svc"}, byName, false},
		{sanMatcher{exact: "10.0.0.7"}, byIP, false}, // a DNS matcher never matches an IP SAN
		{sanMatcher{ip: true, exact: "10.0.0.7"}, byIP, true},
		{sanMatcher{ip: true, exact: "10.0.0.8"}, byIP, false},
		{sanMatcher{ip: true, exact: "xds.mcpgate.svc"}, byName, false},
		{sanMatcher{exact: "xds.mcpgate.svc"}, wild, true},
		{sanMatcher{exact: "a.xds.mcpgate.svc"}, wild, false},
	} {
		if got := c.m.matches(c.cert); got != c.want {
			t.Errorf("%+v against %v %v: %v, want %v", c.m, c.cert.DNSNames, c.cert.IPAddresses, got, c.want)
		}
	}
}
