package authz

import (
	"testing"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// The verified client certificate's variables: source.subject, source.uriSan, source.dnsSan,
// source.certificateSha256 and source.identity (a SPIFFE URI SAN of Istio's form), set with a
// certificate and empty (has() false) without one.
func TestPeerCertificate(t *testing.T) {
	e := newEnv(t)
	withCert := &Input{SourceAddress: "10.1.2.3:51000", Peer: PeerCertificate{
		Subject: "CN=client-a,O=mcpgate", URISAN: "spiffe://cluster.local/ns/agents/sa/planner",
		DNSSAN: "client-a.example", SHA256: "0a1b2c",
	}}
	for expr, want := range map[string]bool{
		`source.subject == "CN=client-a,O=mcpgate"`:                      true,
		`source.subject.startsWith("CN=client-b,")`:                      false,
		`source.dnsSan == "client-a.example"`:                            true,
		`source.dnsSan.endsWith(".example")`:                             true,
		`source.uriSan == "spiffe://cluster.local/ns/agents/sa/planner"`: true,
		`source.certificateSha256 == "0a1b2c"`:                           true,
		`has(source.subject) && has(source.dnsSan)`:                      true,
		`has(source.identity)`:                                           true,
		`source.identity.trustDomain == "cluster.local"`:                 true,
		`source.identity.namespace == "agents"`:                          true,
		`source.identity.serviceAccount == "planner"`:                    true,
	} {
		d := compile(t, e, allow("r", expr)).Evaluate(t.Context(), withCert)
		if d.Allowed != want || d.Errors != nil {
			t.Errorf("%s: %+v, want %v", expr, d, want)
		}
	}
	notSpiffe := &Input{Peer: PeerCertificate{Subject: "CN=b", URISAN: "https://b.example/id", SHA256: "ff"}}
	none := &Input{SourceAddress: "10.1.2.3:51000"}
	for _, c := range []struct {
		name string
		in   *Input
		expr string
		want bool
		err  bool // reading an absent value is an error, as an absent JWT claim is
	}{
		{"not SPIFFE", notSpiffe, `has(source.identity)`, false, false},
		{"not SPIFFE", notSpiffe, `source.identity.trustDomain == ""`, false, true},
		{"not SPIFFE", notSpiffe, `has(source.dnsSan)`, false, false},
		{"not SPIFFE", notSpiffe, `source.dnsSan == ""`, false, true},
		{"no certificate", none, `has(source.subject)`, false, false},
		{"no certificate", none, `has(source.certificateSha256)`, false, false},
		{"no certificate", none, `source.dnsSan == "client-a.example"`, false, true},
		{"no certificate", none, `has(source.identity)`, false, false},
	} {
		d := compile(t, e, allow("r", c.expr)).Evaluate(t.Context(), c.in)
		if d.Allowed != c.want || (d.Errors != nil) != c.err {
			t.Errorf("%s: %s: %+v, want %v (error: %v)", c.name, c.expr, d, c.want, c.err)
		}
	}
	// A DENY rule on a certificate's value fails closed without one: it denies (a rule that
	// denies one subject must not let a request without a certificate through), unless it
	// asks has() first.
	for expr, denied := range map[string]bool{
		`source.subject == "CN=revoked,O=mcpgate"`:                         true,
		`source.identity.namespace == "untrusted"`:                         true,
		`has(source.subject) && source.subject == "CN=revoked,O=mcpgate"`:  false,
		`has(source.identity) && source.identity.namespace == "untrusted"`: false,
	} {
		if d := compile(t, e, deny("d", expr), allow("a", "true")).Evaluate(t.Context(), none); d.Allowed == denied {
			t.Errorf("DENY %s without a certificate: %+v, want denied %v", expr, d, denied)
		}
	}
	// A misspelt field (agentgateway's subjectAltNames, which Envoy's attributes cannot fill)
	// is a compile error, not a rule that never holds.
	if _, err := e.Compile([]*policyv1.Rule{allow("r", `"a.example" in source.subjectAltNames`)}); err == nil {
		t.Error("source.subjectAltNames compiled")
	}
}

func TestSpiffeIdentity(t *testing.T) {
	for uri, ok := range map[string]bool{
		"spiffe://td/ns/n/sa/s":   true,
		"spiffe://td/ns/n/sa/s/x": false,
		"spiffe://td/ns//sa/s":    false,
		"spiffe://td/sa/s/ns/n":   false,
		"https://td/ns/n/sa/s":    false,
		"spiffe:///ns/n/sa/s":     false,
	} {
		if _, got := spiffeIdentity(uri); got != ok {
			t.Errorf("%s: %v, want %v", uri, got, ok)
		}
	}
}
