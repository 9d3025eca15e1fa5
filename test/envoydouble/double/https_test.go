package double_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mcpgate/mcpgate/internal/pki"
)

// tlsSecret is an SDS Secret with a certificate for names, issued by ca.
func tlsSecret(t *testing.T, ca *pki.CA, name string, names ...string) *tlsv3.Secret {
	t.Helper()
	crt, key, err := ca.IssueServer(names, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: crt}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: key}},
	}}}
}

// tlsChains turns a listener's one chain into one TLS chain per entry (server name -> Secret;
// "" = the chain without server_names), with the TLS inspector, as the translator emits an
// HTTPS port.
func tlsChains(t *testing.T, l *listenerv3.Listener, chains [][2]string) {
	hcm := l.FilterChains[0].Filters
	l.FilterChains = nil
	for _, c := range chains {
		ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols: []string{"h2", "http/1.1"},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: c[1], SdsConfig: &corev3.ConfigSource{
				ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}},
		}}
		fc := &listenerv3.FilterChain{Name: "chain-" + c[0], Filters: hcm, TransportSocket: &corev3.TransportSocket{
			Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: any_(t, ctx)}}}
		if c[0] != "" {
			fc.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{c[0]}}
		}
		l.FilterChains = append(l.FilterChains, fc)
	}
	l.ListenerFilters = []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector",
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: any_(t, &tlsinspectorv3.TlsInspector{})}}}
}

// handshake connects with sni (offering h2 and http/1.1, as browsers and the go-sdk do) and
// returns the served certificate's DNS names and the negotiated protocol. With roots nil it
// verifies nothing (the chain choice is under test, and a wildcard certificate does not cover
// every name its wildcard chain is chosen for).
func handshake(t *testing.T, addr, sni string, roots *x509.CertPool) (names string, alpn string, err error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: sni, RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: roots == nil})
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	st := c.ConnectionState()
	return strings.Join(st.PeerCertificates[0].DNSNames, ","), st.NegotiatedProtocol, nil
}

// TestHTTPSListener: a listener with TLS filter chains serves the certificate of the chain the
// SNI selects (exact, then the longest wildcard, then the chain without server_names), takes
// its certificates from SDS Secrets, offers http/1.1 by ALPN, routes the decrypted requests
// with x-forwarded-proto https, and serves a Secret's update to new connections.
func TestHTTPSListener(t *testing.T) {
	e := newEnv(t, answer(nil))
	a := echo(t, "a")
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	l := listener(t, e.listen, nil, nil)
	tlsChains(t, l, [][2]string{{"mcp.example.com", "secret/ns/mcp"}, {"*.example.com", "secret/ns/wild"}, {"*.b.example.com", "secret/ns/b"}, {"", "secret/ns/any"}})
	rc := routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("default", "/", "a", nil)))
	secrets := []*tlsv3.Secret{tlsSecret(t, ca, "secret/ns/mcp", "mcp.example.com"), tlsSecret(t, ca, "secret/ns/wild", "*.example.com"),
		tlsSecret(t, ca, "secret/ns/b", "*.b.example.com"), tlsSecret(t, ca, "secret/ns/any", "any.test")}
	e.push(l, rc, staticCluster("a", a.Listener.Addr().String()), secrets[0], secrets[1], secrets[2], secrets[3])
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}
	roots := ca.Pool()
	for sni, want := range map[string]string{
		"mcp.example.com": "mcp.example.com", "x.example.com": "*.example.com", "x.y.example.com": "*.example.com",
		"x.b.example.com": "*.b.example.com", "MCP.example.com": "mcp.example.com", "example.com": "any.test", "": "any.test",
	} {
		names, alpn, err := handshake(t, e.listen, sni, nil)
		if err != nil {
			t.Fatalf("SNI %q: %v", sni, err)
		}
		if names != want || alpn != "http/1.1" {
			t.Errorf("SNI %q: certificate for %q, ALPN %q; want %q, http/1.1", sni, names, alpn, want)
		}
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "mcp.example.com"}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + e.listen + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from a" || resp.Header.Get("x-seen-x-forwarded-proto") != "https" || resp.Proto != "HTTP/1.1" {
		t.Errorf("got %d %s %q, x-forwarded-proto %q; want 200 HTTP/1.1 from a over https", resp.StatusCode, resp.Proto, body, resp.Header.Get("x-seen-x-forwarded-proto"))
	}

	// Rotation: the Secret's new certificate is served to new connections.
	rotated := tlsSecret(t, ca, "secret/ns/mcp", "mcp.example.com", "rotated.example.com")
	e.push(l, rc, staticCluster("a", a.Listener.Addr().String()), rotated, secrets[1], secrets[2], secrets[3])
	names, _, err := handshake(t, e.listen, "mcp.example.com", roots)
	if err != nil || names != "mcp.example.com,rotated.example.com" {
		t.Errorf("after rotation: certificate for %q (%v), want mcp.example.com,rotated.example.com", names, err)
	}
}

// TestHTTPSRefused: what the double does not reproduce, or what Envoy refuses, is NACKed
// naming the field: a chain requiring client certificates without a validation context, a
// Secret whose key is not its certificate's, two chains with the same match.
func TestHTTPSRefused(t *testing.T) {
	e := newEnv(t, answer(nil))
	a := echo(t, "a")
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good := tlsSecret(t, ca, "secret/ns/mcp", "mcp.example.com")
	l := listener(t, e.listen, nil, nil)
	tlsChains(t, l, [][2]string{{"", "secret/ns/mcp"}})
	rc := routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("default", "/", "a", nil)))
	e.push(l, rc, staticCluster("a", a.Listener.Addr().String()), good)
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}

	mtls := listener(t, e.listen, nil, nil)
	tlsChains(t, mtls, [][2]string{{"", "secret/ns/mcp"}})
	ctx := &tlsv3.DownstreamTlsContext{}
	if err := mtls.FilterChains[0].TransportSocket.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		t.Fatal(err)
	}
	ctx.RequireClientCertificate = wrapperspb.Bool(true)
	mtls.FilterChains[0].TransportSocket.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: any_(t, ctx)}
	e.push(mtls, rc, staticCluster("a", a.Listener.Addr().String()), good)
	if n := e.lastNACK(); !strings.Contains(n, "require_client_certificate") {
		t.Errorf("NACK %q, want one naming require_client_certificate", n)
	}

	dup := listener(t, e.listen, nil, nil)
	tlsChains(t, dup, [][2]string{{"a.example.com", "secret/ns/mcp"}, {"a.example.com", "secret/ns/mcp"}})
	e.push(dup, rc, staticCluster("a", a.Listener.Addr().String()), good)
	if n := e.lastNACK(); !strings.Contains(n, "same matching rules") {
		t.Errorf("NACK %q, want one about the same matching rules", n)
	}

	other := tlsSecret(t, ca, "x", "other.example.com")
	mismatch := tlsSecret(t, ca, "secret/ns/mcp", "mcp.example.com")
	mismatch.GetTlsCertificate().PrivateKey = other.GetTlsCertificate().PrivateKey
	e.push(l, rc, staticCluster("a", a.Listener.Addr().String()), mismatch)
	if n := e.lastNACK(); !strings.Contains(n, `secret "secret/ns/mcp"`) || !strings.Contains(n, "private key does not match") {
		t.Errorf("NACK %q, want one naming the Secret and the key mismatch", n)
	}
	// The last good version of the Secret is kept: the listener still serves its certificate.
	if names, _, err := handshake(t, e.listen, "mcp.example.com", ca.Pool()); err != nil || names != "mcp.example.com" {
		t.Errorf("after the refused Secret: %q, %v; want the last good certificate", names, err)
	}
}

// TestHTTPSMisdirected: each filter chain routes with its own connection manager's RDS route
// configuration, as Envoy does and as the translator emits an HTTPS port (one per Gateway
// listener, answering 421 for the Hosts of the other listeners): with the SNI a.example.com, Host
// a.example.com reaches a, Host b.example.com (the wildcard listener's) gets the direct 421, and
// a Host no chain's configuration has gets 404; with the SNI b.example.com, Host b.example.com
// reaches b and Host a.example.com gets 421.
func TestHTTPSMisdirected(t *testing.T) {
	e := newEnv(t, answer(nil))
	a, b := echo(t, "a"), echo(t, "b")
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	l := listener(t, e.listen, nil, nil)
	tlsChains(t, l, [][2]string{{"a.example.com", "secret/ns/a"}, {"*.example.com", "secret/ns/wild"}})
	chainRDS(t, l)
	misdirected := &routev3.Route{Name: "mcpgate/misdirected-request", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 421,
			Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "misdirected\n"}}}}}
	rcA := routeConfig(l.Name+"/chain-a.example.com", vhost("a", []string{"a.example.com"}, prefixRoute("a", "/", "a", nil)),
		vhost("wild/misdirected", []string{"*.example.com"}, misdirected))
	rcWild := routeConfig(l.Name+"/chain-*.example.com", vhost("wild", []string{"*.example.com"}, prefixRoute("b", "/", "b", nil)),
		vhost("a/misdirected", []string{"a.example.com"}, misdirected))
	e.push(l, rcA, rcWild, staticCluster("a", a.Listener.Addr().String()), staticCluster("b", b.Listener.Addr().String()),
		tlsSecret(t, ca, "secret/ns/a", "a.example.com"), tlsSecret(t, ca, "secret/ns/wild", "*.example.com"))
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}
	for _, c := range []struct {
		sni, host string
		status    int
		body      string
	}{
		{"a.example.com", "a.example.com", 200, "hello from a"},
		{"a.example.com", "b.example.com", 421, "misdirected\n"},
		{"a.example.com", "unknown.test", 404, ""},
		{"b.example.com", "b.example.com", 200, "hello from b"},
		{"b.example.com", "a.example.com", 421, "misdirected\n"},
		{"b.example.com", "unknown.test", 404, ""},
	} {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: c.sni}}}
		req, err := http.NewRequest(http.MethodGet, "https://"+e.listen+"/hello", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = c.host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("SNI %s, Host %s: %v", c.sni, c.host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		client.CloseIdleConnections()
		if resp.StatusCode != c.status || string(body) != c.body {
			t.Errorf("SNI %s, Host %s: %d %q, want %d %q", c.sni, c.host, resp.StatusCode, body, c.status, c.body)
		}
	}

	// A connection keeps the chain its handshake selected, as Envoy keeps it: a chain for
	// c.example.com added meanwhile (routing to a) serves new connections, while the open one,
	// on the wildcard chain, still routes to b.
	kept := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "c.example.com"}}}
	t.Cleanup(kept.CloseIdleConnections)
	get := func(client *http.Client) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "https://"+e.listen+"/hello", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "c.example.com"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("Host c.example.com: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	if got := get(kept); got != "hello from b" {
		t.Fatalf("c.example.com on the wildcard chain: %q, want b's answer", got)
	}
	tlsChains(t, l, [][2]string{{"a.example.com", "secret/ns/a"}, {"*.example.com", "secret/ns/wild"}, {"c.example.com", "secret/ns/c"}})
	chainRDS(t, l)
	rcC := routeConfig(l.Name+"/chain-c.example.com", vhost("c", []string{"c.example.com"}, prefixRoute("a", "/", "a", nil)))
	e.push(l, rcA, rcWild, rcC, staticCluster("a", a.Listener.Addr().String()), staticCluster("b", b.Listener.Addr().String()),
		tlsSecret(t, ca, "secret/ns/a", "a.example.com"), tlsSecret(t, ca, "secret/ns/wild", "*.example.com"), tlsSecret(t, ca, "secret/ns/c", "c.example.com"))
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}
	fresh := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "c.example.com"}}}
	t.Cleanup(fresh.CloseIdleConnections)
	if got := get(fresh); got != "hello from a" {
		t.Errorf("c.example.com on a new connection: %q, want a's answer (its own chain)", got)
	}
	if got := get(kept); got != "hello from b" {
		t.Errorf("c.example.com on the connection opened before the update: %q, want b's answer (the chain it was on)", got)
	}
}

// chainRDS gives each filter chain of l its own RDS route configuration, LISTENER/CHAIN, as the
// translator does on an HTTPS port.
func chainRDS(t *testing.T, l *listenerv3.Listener) {
	t.Helper()
	for _, fc := range l.FilterChains {
		hcm := &hcmv3.HttpConnectionManager{}
		if err := fc.Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		hcm.GetRds().RouteConfigName = l.Name + "/" + fc.Name
		fc.Filters = []*listenerv3.Filter{{Name: fc.Filters[0].Name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: any_(t, hcm)}}}
	}
}
