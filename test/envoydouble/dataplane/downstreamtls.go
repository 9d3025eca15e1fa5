package dataplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// tlsListener terminates TLS on the connections of a listener whose active configuration has
// TLS filter chains, as Envoy's TLS transport socket does; a plaintext configuration's
// connections pass as they are. The configuration is read at each connection: an update that
// changes a listener's chains applies to new connections, as Envoy's new listener version does.
type tlsListener struct {
	net.Listener
	s  *Server
	ll *liveListener
}

// Accept returns the next connection, wrapped in TLS when the listener terminates it. The
// handshake runs when the HTTP server first reads (tls.Conn), not here: a slow client does not
// hold up the others.
func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cfg := l.ll.cfg.Load()
	if cfg == nil || cfg.TLS == nil {
		return c, nil
	}
	lt := cfg.TLS
	cc := &chainConn{Conn: c}
	return tls.Server(cc, &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		chain := lt.Select(hello.ServerName)
		cc.chain.Store(chain)
		return l.s.chainConfig(chain, hello)
	}}), nil
}

// chainConn is a TLS listener's connection with the filter chain its handshake selected: Envoy
// keeps a connection on that chain (its connection manager and route configuration) for the
// connection's life, whatever later versions of the listener's chains say.
type chainConn struct {
	net.Conn
	chain atomic.Pointer[xdsconf.TLSChain]
}

// chainKey is the context key of a request's *chainConn (connContext).
type chainKey struct{}

// connContext gives the requests of a TLS connection its chainConn (http.Server.ConnContext).
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		if cc, ok := tc.NetConn().(*chainConn); ok {
			return context.WithValue(ctx, chainKey{}, cc)
		}
	}
	return ctx
}

// chainOf returns the filter chain the handshake of r's connection selected, nil for a
// plaintext connection.
func chainOf(r *http.Request) *xdsconf.TLSChain {
	if cc, ok := r.Context().Value(chainKey{}).(*chainConn); ok {
		return cc.chain.Load()
	}
	return nil
}

// chainConfig is the TLS configuration of chain, the filter chain a ClientHello selected
// (xdsconf.ListenerTLS.Select: SNI exact, then the longest wildcard, then the chain without
// server_names; none: the handshake fails, as Envoy closes a connection no chain matches). Its
// certificates are the Secrets as the active snapshot holds them now, so a Secret update
// rotates the certificate for new connections while open ones keep theirs, as Envoy's SDS
// update does. With several certificates, Go picks the first the client supports for its SNI,
// as Envoy picks among a context's certificates by the client's key types and SNI. ALPN: the
// double's downstream speaks HTTP/1.1 only, so of the chain's alpn_protocols it offers
// http/1.1 alone (Envoy would also offer h2 and serve HTTP/2 to clients asking for it). A chain
// with a validation context asks for and verifies client certificates (clientAuth), with the
// Secret's CA certificates as the snapshot holds them now, so a CA rotation applies to new
// connections as Envoy's SDS update does.
func (s *Server) chainConfig(chain *xdsconf.TLSChain, hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if chain == nil {
		return nil, fmt.Errorf("no filter chain matches the server name %q", hello.ServerName)
	}
	snap := s.Snapshot()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12} // Envoy's default minimum for servers
	for _, n := range chain.Secrets {
		sec := snap.Secrets[n]
		if sec == nil || sec.ClientCA != nil {
			return nil, fmt.Errorf("filter chain %q: Secret %q is missing or not a tls_certificate", chain.Name, n)
		}
		cfg.Certificates = append(cfg.Certificates, sec.Cert)
	}
	if slices.Contains(chain.ALPN, "http/1.1") {
		cfg.NextProtos = []string{"http/1.1"}
	}
	if chain.ClientCA != "" {
		sec := snap.Secrets[chain.ClientCA]
		if sec == nil || sec.ClientCA == nil {
			return nil, fmt.Errorf("filter chain %q: Secret %q is missing or not a validation_context", chain.Name, chain.ClientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = sec.ClientCA.Pool, clientAuth(sec.ClientCA.AcceptUntrusted, chain.RequireClientCert)
	}
	return cfg, nil
}

// clientAuth is the Go server mode that reproduces Envoy's client certificate handling by a
// downstream TLS context with a validation context (DefaultCertValidator and ContextImpl, as read in its sources):
// Envoy always asks for a certificate (SSL_VERIFY_PEER), naming trusted_ca's subjects in its
// request (SSL_CTX_set_client_CA_list; Go names ClientCAs' too), and fails the handshake without
// one only with require_client_certificate (SSL_VERIFY_FAIL_IF_NO_PEER_CERT; BoringSSL's alert
// certificate_required, Go's the same in TLS 1.3). A certificate presented is verified against
// trusted_ca as an SSL client's (X509_STORE_CTX_set_default "ssl_client": the chain to a trust
// anchor, the validity dates, extended key usage clientAuth when the certificate has one; Go's
// verification with ExtKeyUsageClientAuth checks these, and also that the intermediates' usages
// allow clientAuth, which BoringSSL does not), and one that fails fails the handshake, required
// or not, unless trust_chain_verification is ACCEPT_UNTRUSTED, which accepts it (Envoy verifies
// it and records the failure; the double does not verify it at all).
func clientAuth(acceptUntrusted, require bool) tls.ClientAuthType {
	switch {
	case acceptUntrusted && require:
		return tls.RequireAnyClientCert
	case acceptUntrusted:
		return tls.RequestClientCert
	case require:
		return tls.RequireAndVerifyClientCert
	}
	return tls.VerifyClientCertIfGiven
}
