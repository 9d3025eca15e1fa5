package xdsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/internal/pki"
)

// TestSANMatcher: as Envoy's certificate validator, a DNS matcher compares DNS SANs only (a
// wildcard SAN covers one label, a wildcard matcher only the same wildcard SAN), an IP_ADDRESS
// matcher IP SANs only, a URI matcher URI SANs only, exactly (a BackendTLSPolicy's
// subjectAltNames of type URI, SPIFFE IDs).
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
	spiffe := &x509.Certificate{URIs: []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/mcp"}}, DNSNames: []string{"cluster.local"}}
	ip, uri := tlsv3.SubjectAltNameMatcher_IP_ADDRESS, tlsv3.SubjectAltNameMatcher_URI
	for _, c := range []struct {
		m    sanMatcher
		cert *x509.Certificate
		want bool
	}{
		{sanMatcher{exact: "xds.mcpgate.svc"}, byName, true},
		{sanMatcher{exact: "XDS.mcpgate.svc"}, byName, true},
		{sanMatcher{exact: "other.mcpgate.svc"}, byName, false},
		{sanMatcher{exact: "10.0.0.7"}, byIP, false}, // a DNS matcher never matches an IP SAN
		{sanMatcher{typ: ip, exact: "10.0.0.7"}, byIP, true},
		{sanMatcher{typ: ip, exact: "10.0.0.8"}, byIP, false},
		{sanMatcher{typ: ip, exact: "xds.mcpgate.svc"}, byName, false},
		{sanMatcher{exact: "xds.mcpgate.svc"}, wild, true},
		{sanMatcher{exact: "a.xds.mcpgate.svc"}, wild, false},
		{sanMatcher{exact: ".mcpgate.svc"}, wild, false},    // the wildcard is a whole label, never an empty one
		{sanMatcher{exact: "*.mcpgate.svc"}, wild, true},    // the same wildcard, as a name
		{sanMatcher{exact: "*.mcpgate.svc"}, byName, false}, // a matcher's wildcard is no wildcard
		{sanMatcher{typ: uri, exact: "spiffe://cluster.local/ns/default/sa/mcp"}, spiffe, true},
		{sanMatcher{typ: uri, exact: "spiffe://cluster.local/ns/default/sa/MCP"}, spiffe, false}, // exact is case-sensitive
		{sanMatcher{typ: uri, exact: "spiffe://cluster.local/ns/default/sa/mcp"}, byName, false},
		{sanMatcher{typ: uri, exact: "cluster.local"}, spiffe, false}, // a URI matcher never matches a DNS SAN
		{sanMatcher{exact: "spiffe://cluster.local/ns/default/sa/mcp"}, spiffe, false},
	} {
		if got := c.m.matches(c.cert); got != c.want {
			t.Errorf("%+v against %v %v: %v, want %v", c.m, c.cert.DNSNames, c.cert.IPAddresses, got, c.want)
		}
	}
}

// TestUpstreamTLSVerification: as Envoy's UpstreamTlsContext, the double sends sni as the server
// name (none when empty) and verifies the upstream certificate only with a validation_context:
// then its chain against trusted_ca, and its names only when match_typed_subject_alt_names is
// set (mcpgate's insecureSkipVerify Hostname leaves them out, All the whole validation_context).
func TestUpstreamTLSVerification(t *testing.T) {
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	leaf := func(ca *pki.CA, name string) [][]byte {
		c, _, err := ca.IssueServer([]string{name}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(c)
		return [][]byte{b.Bytes}
	}
	socket := func(ctx *tlsv3.UpstreamTlsContext) *tls.Config {
		a, err := anypb.New(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _, err := compileUpstreamTLS(&corev3.TransportSocket{Name: tlsTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, "c")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	trusted := &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: caFile}}
	names := func(n string) []*tlsv3.SubjectAltNameMatcher {
		return []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: n}}}}
	}

	// No validation context: no server name without sni, any certificate passes.
	none := socket(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{}})
	if none.ServerName != "" || !none.InsecureSkipVerify || none.VerifyPeerCertificate != nil {
		t.Errorf("no validation context: server name %q, verification %v", none.ServerName, none.VerifyPeerCertificate != nil)
	}
	for _, c := range []struct {
		what string
		vc   *tlsv3.CertificateValidationContext
		cert [][]byte
		ok   bool
	}{
		{"the chain alone, any name", &tlsv3.CertificateValidationContext{TrustedCa: trusted}, leaf(ca, "anything.example"), true},
		{"the chain alone, another CA", &tlsv3.CertificateValidationContext{TrustedCa: trusted}, leaf(other, "localhost"), false},
		{"a matching name", &tlsv3.CertificateValidationContext{TrustedCa: trusted, MatchTypedSubjectAltNames: names("localhost")}, leaf(ca, "localhost"), true},
		{"another name", &tlsv3.CertificateValidationContext{TrustedCa: trusted, MatchTypedSubjectAltNames: names("other.example")}, leaf(ca, "localhost"), false},
		{"a matching name from another CA", &tlsv3.CertificateValidationContext{TrustedCa: trusted, MatchTypedSubjectAltNames: names("localhost")}, leaf(other, "localhost"), false},
	} {
		cfg := socket(&tlsv3.UpstreamTlsContext{Sni: "front.example", CommonTlsContext: &tlsv3.CommonTlsContext{
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: c.vc}}})
		if cfg.ServerName != "front.example" {
			t.Errorf("%s: server name %q, want front.example", c.what, cfg.ServerName)
		}
		if err := cfg.VerifyPeerCertificate(c.cert, nil); (err == nil) != c.ok {
			t.Errorf("%s: verification %v, want ok=%v", c.what, err, c.ok)
		}
	}
}
