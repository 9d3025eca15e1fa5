package dataplane

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"

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
	return tls.Server(c, &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		return l.s.chainConfig(lt, hello)
	}}), nil
}

// chainConfig is the TLS configuration of the filter chain a ClientHello selects
// (xdsconf.ListenerTLS.Select: SNI exact, then the longest wildcard, then the chain without
// server_names; none: the handshake fails, as Envoy closes a connection no chain matches). Its
// certificates are the Secrets as the active snapshot holds them now, so a Secret update
// rotates the certificate for new connections while open ones keep theirs, as Envoy's SDS
// update does. With several certificates, Go picks the first the client supports for its SNI,
// as Envoy picks among a context's certificates by the client's key types and SNI. ALPN: the
// double's downstream speaks HTTP/1.1 only, so of the chain's alpn_protocols it offers
// http/1.1 alone (Envoy would also offer h2 and serve HTTP/2 to clients asking for it).
func (s *Server) chainConfig(lt *xdsconf.ListenerTLS, hello *tls.ClientHelloInfo) (*tls.Config, error) {
	chain := lt.Select(hello.ServerName)
	if chain == nil {
		return nil, fmt.Errorf("no filter chain matches the server name %q", hello.ServerName)
	}
	snap := s.Snapshot()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12} // Envoy's default minimum for servers
	for _, n := range chain.Secrets {
		sec := snap.Secrets[n]
		if sec == nil {
			return nil, fmt.Errorf("filter chain %q: Secret %q is missing", chain.Name, n)
		}
		cfg.Certificates = append(cfg.Certificates, sec.Cert)
	}
	if slices.Contains(chain.ALPN, "http/1.1") {
		cfg.NextProtos = []string{"http/1.1"}
	}
	return cfg, nil
}
