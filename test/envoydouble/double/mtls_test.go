package double_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mcpgate/mcpgate/internal/pki"
)

// clientCASecret is an SDS validation context trusting ca's certificate; untrusted sets
// trust_chain_verification ACCEPT_UNTRUSTED.
func clientCASecret(name string, ca *pki.CA, untrusted bool) *tlsv3.Secret {
	vc := &tlsv3.CertificateValidationContext{TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: ca.CertPEM}}}
	if untrusted {
		vc.TrustChainVerification = tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED
	}
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: vc}}
}

// withClientCA makes every TLS chain of l verify client certificates with the SDS validation
// context name, requiring one when require is set, as the translator emits Gateway API's
// spec.tls.frontend.
func withClientCA(t *testing.T, l *listenerv3.Listener, name string, require bool) {
	t.Helper()
	for _, fc := range l.FilterChains {
		ctx := &tlsv3.DownstreamTlsContext{}
		if err := fc.TransportSocket.GetTypedConfig().UnmarshalTo(ctx); err != nil {
			t.Fatal(err)
		}
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{
				ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}
		if require {
			ctx.RequireClientCertificate = wrapperspb.Bool(true)
		}
		fc.TransportSocket.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: any_(t, ctx)}
	}
}

// clientCert is a client certificate issued by ca (extended key usage clientAuth), or with
// server set a server certificate (serverAuth only).
func clientCert(t *testing.T, ca *pki.CA, server bool) *tls.Certificate {
	t.Helper()
	var crt, key []byte
	var err error
	if server {
		crt, key, err = ca.IssueServer([]string{"client.test"}, time.Now())
	} else {
		crt, key, err = ca.IssueClient("client", &url.URL{Scheme: "spiffe", Host: "test", Path: "/client"}, time.Now())
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestHTTPSClientCertificates: a chain with a validation context asks for a client certificate
// and verifies it against the Secret's CA as Envoy does (the double's clientAuth): with
// require_client_certificate, a client without a certificate, with one of another CA or with a
// certificate not for client authentication fails the handshake and one of the CA reaches the
// route; without it, a client without a certificate passes but one whose certificate fails
// verification does not; with ACCEPT_UNTRUSTED every client passes. A CA update applies to new
// connections.
func TestHTTPSClientCertificates(t *testing.T) {
	e := newEnv(t, answer(nil))
	a := echo(t, "a")
	serverCA, clientCA, otherCA := newCA(t), newCA(t), newCA(t)
	const caName = "client-ca/ns/gw/443"
	cert := tlsSecret(t, serverCA, "secret/ns/mcp", "mcp.example.com")
	good, other, serverCert := clientCert(t, clientCA, false), clientCert(t, otherCA, false), clientCert(t, clientCA, true)
	get := func(c *tls.Certificate) error {
		t.Helper()
		cfg := &tls.Config{RootCAs: serverCA.Pool(), ServerName: "mcp.example.com"}
		if c != nil {
			// Sent whatever CAs the server names, as a client with one certificate may.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil }
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, Timeout: 10 * time.Second}
		resp, err := client.Get("https://" + e.listen + "/hello")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "hello from a" {
			t.Fatalf("got %d %q, want 200 from a", resp.StatusCode, body)
		}
		return nil
	}
	expect := func(what string, c *tls.Certificate, refused string) {
		t.Helper()
		err := get(c)
		switch {
		case refused == "" && err != nil:
			t.Errorf("%s: %v, want 200", what, err)
		case refused != "" && (err == nil || !strings.Contains(err.Error(), refused)):
			t.Errorf("%s: %v, want a handshake failure with %q", what, err, refused)
		}
	}
	rc := routeConfig("rc", vhost("vh", []string{"*"}, prefixRoute("default", "/", "a", nil)))
	serve := func(ca *pki.CA, require, untrusted bool) {
		t.Helper()
		l := listener(t, e.listen, nil, nil)
		tlsChains(t, l, [][2]string{{"", "secret/ns/mcp"}})
		withClientCA(t, l, caName, require)
		rc.Name = l.Name
		e.push(l, rc, staticCluster("a", a.Listener.Addr().String()), cert, clientCASecret(caName, ca, untrusted))
		if n := e.lastNACK(); n != "" {
			t.Fatalf("NACK: %s", n)
		}
	}

	serve(clientCA, true, false) // AllowValidOnly
	expect("required, the CA's client certificate", good, "")
	expect("required, no certificate", nil, "certificate required")
	expect("required, another CA's certificate", other, "certificate")
	expect("required, the CA's server certificate", serverCert, "certificate")

	serve(clientCA, false, false) // not required, verified when given
	expect("verified if given, no certificate", nil, "")
	expect("verified if given, the CA's client certificate", good, "")
	expect("verified if given, another CA's certificate", other, "certificate")

	serve(clientCA, false, true) // AllowInsecureFallback
	expect("untrusted accepted, no certificate", nil, "")
	expect("untrusted accepted, another CA's certificate", other, "")
	expect("untrusted accepted, the CA's client certificate", good, "")

	serve(otherCA, true, false) // the CA rotated
	expect("after rotation, the new CA's certificate", other, "")
	expect("after rotation, the old CA's certificate", good, "certificate")
}

// TestHTTPSClientCARefused: a client certificate validation the double does not reproduce, or
// Envoy refuses, is NACKed naming the field: a CA bundle that does not load, SAN matchers, an
// inline validation context, require_client_certificate without a validation context (in
// TestHTTPSRefused).
func TestHTTPSClientCARefused(t *testing.T) {
	e := newEnv(t, answer(nil))
	a := echo(t, "a")
	ca := newCA(t)
	const caName = "client-ca/ns/gw/443"
	cert := tlsSecret(t, ca, "secret/ns/mcp", "mcp.example.com")
	l := listener(t, e.listen, nil, nil)
	tlsChains(t, l, [][2]string{{"", "secret/ns/mcp"}})
	withClientCA(t, l, caName, true)
	rc := routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("default", "/", "a", nil)))
	e.push(l, rc, staticCluster("a", a.Listener.Addr().String()), cert, clientCASecret(caName, ca, false))
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}
	for _, tc := range []struct {
		name string
		edit func(vc *tlsv3.CertificateValidationContext)
		want string
	}{
		{"no certificate", func(vc *tlsv3.CertificateValidationContext) {
			vc.TrustedCa = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "no PEM here\n"}}
		}, "Failed to load trusted CA certificates: no certificate"},
		{"bad base64", func(vc *tlsv3.CertificateValidationContext) {
			vc.TrustedCa = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{
				InlineString: string(ca.CertPEM) + "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n"}}
		}, "Failed to load trusted CA certificates: a PEM block does not decode"},
		{"SAN matchers", func(vc *tlsv3.CertificateValidationContext) {
			vc.MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "client.test"}}}}
		}, "match_typed_subject_alt_names"},
	} {
		bad := clientCASecret(caName, ca, false)
		tc.edit(bad.GetValidationContext())
		before := e.nackCount()
		e.push(l, rc, staticCluster("a", a.Listener.Addr().String()), cert, bad)
		if n := e.lastNACK(); e.nackCount() == before || !strings.Contains(n, `secret "`+caName+`"`) || !strings.Contains(n, tc.want) {
			t.Errorf("%s: NACK %q, want one naming the Secret and %q", tc.name, n, tc.want)
		}
	}

	inline := listener(t, e.listen, nil, nil)
	tlsChains(t, inline, [][2]string{{"", "secret/ns/mcp"}})
	ctx := &tlsv3.DownstreamTlsContext{}
	if err := inline.FilterChains[0].TransportSocket.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		t.Fatal(err)
	}
	ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: clientCASecret("", ca, false).GetValidationContext()}
	inline.FilterChains[0].TransportSocket.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: any_(t, ctx)}
	before := e.nackCount()
	e.push(inline, rc, staticCluster("a", a.Listener.Addr().String()), cert, clientCASecret(caName, ca, false))
	if n := e.lastNACK(); e.nackCount() == before || !strings.Contains(n, "common_tls_context.validation_context") {
		t.Errorf("inline validation context: NACK %q, want one naming common_tls_context.validation_context", n)
	}
}

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// nackCount is how many NACKs the double has sent.
func (e *env) nackCount() int {
	e.nacksMu.Lock()
	defer e.nacksMu.Unlock()
	return len(e.nacks)
}
