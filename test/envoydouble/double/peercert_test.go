package double_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/internal/pki"
)

// certWith is a client certificate of ca with the given subject and SANs.
func certWith(t *testing.T, ca *pki.CA, subject pkix.Name, uris []string, dns []string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subject, DNSNames: dns,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, u := range uris {
		p, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, p)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// digest is Envoy's sha256_peer_certificate_digest of c: lower-case hex of the DER's SHA-256.
func digest(c *tls.Certificate) string {
	sum := sha256.Sum256(c.Certificate[0])
	return hex.EncodeToString(sum[:])
}

// TestClientCertificateAttributesAndXFCC: the ext_proc filter's request_attributes describe the
// downstream client certificate as Envoy's attribute context does (subject in RFC 2253 order,
// the first URI and DNS SAN, the DER's SHA-256 in hex, connection.mtls), a TLS connection without
// a certificate has only the empty subject and mtls false, a plaintext one only mtls false; the
// connection manager's forward_client_cert_details SANITIZE removes a client's
// x-forwarded-client-cert and sets none, SANITIZE_SET replaces it with the connection's
// certificate in Envoy's format (Hash, Subject quoted, each URI, each DNS; a bare URI= without a
// URI SAN; only the details asked for) and removes it without a certificate.
func TestClientCertificateAttributesAndXFCC(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := newUpstream(t, func(w http.ResponseWriter, _ *http.Request) {})
	serverCA, clientCA := newCA(t), newCA(t)
	const caName = "client-ca/ns/gw/443"
	full := certWith(t, clientCA, pkix.Name{CommonName: "client a", Organization: []string{"example"}},
		[]string{"spiffe://test/ns/a/sa/client", "https://second.test/x"}, []string{"a.test", "b.test"})
	dnsOnly := certWith(t, clientCA, pkix.Name{CommonName: "dns only"}, nil, []string{"c.test"})
	attrs := append(contract.PeerCertificateAttributes(), "connection.mtls")
	const forged = `Hash=0000;Subject="CN=forged";URI=spiffe://test/forged`

	// serve pushes the listener: over TLS (verifying client certificates of clientCA without
	// requiring one) or plaintext, its connection manager treating XFCC as x says (nil: the
	// default, SANITIZE).
	serve := func(tlsOn bool, x *hcmv3.HttpConnectionManager_SetCurrentClientCertDetails) {
		t.Helper()
		ep := extProcFilter(5 * time.Second)
		ep.RequestAttributes = attrs
		l := listener(t, e.listen, ep, func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			if x != nil {
				h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE_SET
				h.SetCurrentClientCertDetails = x
			}
		})
		if tlsOn {
			tlsChains(t, l, [][2]string{{"", "secret/ns/mcp"}})
			withClientCA(t, l, caName, false)
		}
		rc := routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("default", "/", "up", nil)))
		if tlsOn {
			e.push(l, rc, staticCluster("up", up.addr), tlsSecret(t, serverCA, "secret/ns/mcp", "mcp.example.com"), clientCASecret(caName, clientCA, false))
		} else {
			e.push(l, rc, staticCluster("up", up.addr))
		}
		if n := e.lastNACK(); n != "" {
			t.Fatalf("NACK: %s", n)
		}
	}
	streams := 0
	// get sends a request with a forged x-forwarded-client-cert, over TLS presenting c (nil:
	// none) or plaintext, and returns the request_attributes ext_proc got and the
	// x-forwarded-client-cert values the upstream got.
	get := func(tlsOn bool, c *tls.Certificate) (map[string]*structpb.Value, []string) {
		t.Helper()
		scheme, tr := "http", &http.Transport{DisableKeepAlives: true}
		if tlsOn {
			scheme = "https"
			tr.TLSClientConfig = &tls.Config{RootCAs: serverCA.Pool(), ServerName: "mcp.example.com"}
			if c != nil {
				tr.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil }
			}
		}
		req, err := http.NewRequest("GET", scheme+"://"+e.listen+"/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("x-forwarded-client-cert", forged)
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s GET: %d, want 200", scheme, resp.StatusCode)
		}
		streams++
		st := e.ext.streams(t, streams)[streams-1]
		msgs := st.messages()
		if len(msgs) == 0 {
			t.Fatal("ext_proc got no message")
		}
		return msgs[0].GetAttributes()["envoy.filters.http.ext_proc"].GetFields(), up.last().header.Values("x-forwarded-client-cert")
	}
	// wantAttrs checks the certificate attributes: those of want present with its values, the
	// others absent.
	wantAttrs := func(what string, got map[string]*structpb.Value, want map[string]any) {
		t.Helper()
		for _, a := range attrs {
			v, ok := got[a]
			w, wantOK := want[a]
			switch {
			case ok != wantOK:
				t.Errorf("%s: attribute %s present %v (%v), want present %v", what, a, ok, v, wantOK)
			case ok && v.AsInterface() != w:
				t.Errorf("%s: attribute %s = %#v, want %#v", what, a, v.AsInterface(), w)
			}
		}
	}
	wantXFCC := func(what string, got []string, want ...string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: the upstream got x-forwarded-client-cert %q, want %q", what, got, want)
		}
	}

	details := &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Subject: wrapperspb.Bool(true), Uri: true, Dns: true}
	serve(true, details)
	a, x := get(true, full)
	wantAttrs("TLS, a certificate", a, map[string]any{
		"connection.subject_peer_certificate":       "CN=client a,O=example",
		"connection.uri_san_peer_certificate":       "spiffe://test/ns/a/sa/client",
		"connection.dns_san_peer_certificate":       "a.test",
		"connection.sha256_peer_certificate_digest": digest(full),
		"connection.mtls":                           true,
		"source.address":                            a["source.address"].AsInterface()})
	wantXFCC("SANITIZE_SET, a certificate", x, "Hash="+digest(full)+`;Subject="CN=client a,O=example";URI=spiffe://test/ns/a/sa/client;URI=https://second.test/x;DNS=a.test;DNS=b.test`)

	a, x = get(true, nil)
	wantAttrs("TLS, no certificate", a, map[string]any{"connection.subject_peer_certificate": "", "connection.mtls": false,
		"source.address": a["source.address"].AsInterface()})
	wantXFCC("SANITIZE_SET, no certificate", x)

	serve(true, &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true})
	a, x = get(true, dnsOnly)
	wantAttrs("TLS, a certificate without URI SAN", a, map[string]any{
		"connection.subject_peer_certificate":       "CN=dns only",
		"connection.dns_san_peer_certificate":       "c.test",
		"connection.sha256_peer_certificate_digest": digest(dnsOnly),
		"connection.mtls":                           true,
		"source.address":                            a["source.address"].AsInterface()})
	wantXFCC("SANITIZE_SET uri only, a certificate without URI SAN", x, "Hash="+digest(dnsOnly)+";URI=")

	serve(true, nil)
	_, x = get(true, full)
	wantXFCC("SANITIZE, a certificate", x)

	serve(false, details)
	a, x = get(false, nil)
	wantAttrs("plaintext", a, map[string]any{"connection.mtls": false, "source.address": a["source.address"].AsInterface()})
	wantXFCC("SANITIZE_SET, plaintext", x)
}
