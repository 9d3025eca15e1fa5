package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	grpcstatus "google.golang.org/grpc/status"
)

// ServerTLS returns the gRPC server option of an xDS server that speaks TLS and accepts only
// clients with a certificate verified against cfg.ClientCAs: cfg is cloned and its ClientAuth
// set to tls.RequireAndVerifyClientCert, whatever it was, and its MinVersion raised to TLS 1.2.
// cfg needs a server certificate (Certificates, GetCertificate or GetConfigForClient) and
// ClientCAs (or GetConfigForClient). Add the option to GRPCServerOptions; pair it with
// Server.BindIdentity, without which any client of the CA may subscribe as any node group.
func ServerTLS(cfg *tls.Config) (grpc.ServerOption, error) {
	if cfg == nil {
		return nil, errors.New("xds TLS: no tls.Config")
	}
	var errs []error
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		errs = append(errs, errors.New("xds TLS: no server certificate"))
	}
	if cfg.ClientCAs == nil && cfg.GetConfigForClient == nil {
		errs = append(errs, errors.New("xds TLS: no client CA: client certificates could not be verified"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c := cfg.Clone()
	c.ClientAuth = tls.RequireAndVerifyClientCert
	c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
	return grpc.Creds(credentials.NewTLS(c)), nil
}

// MutualTLS is ServerTLS(cfg) with BindIdentity(identity): the option of a server that serves
// each client only the node group its certificate is bound to. Use it rather than the two apart.
func (s *Server) MutualTLS(cfg *tls.Config, identity Identity) (grpc.ServerOption, error) {
	if identity == nil {
		return nil, errors.New("xds TLS: no identity to bind node groups to")
	}
	opt, err := ServerTLS(cfg)
	if err != nil {
		return nil, err
	}
	s.BindIdentity(identity)
	return opt, nil
}

// Identity returns the node group that the holder of a verified client certificate may
// subscribe as, or an error when the certificate names none.
type Identity func(cert *x509.Certificate) (group string, err error)

// BindIdentity binds node groups to client certificates: from then on, a stream (or Fetch)
// whose peer has no verified client certificate is refused with Unauthenticated, and one whose
// certificate has no group (identity fails) or whose requests claim another node group than
// identity(leaf certificate) is refused with PermissionDenied. Every request of a stream is
// checked, so a client cannot switch its node mid-stream. Refusals are logged at Warn, with the
// peer address, the group claimed and the certificate's identity, and nothing is sent. Call it
// before serving; nil removes the binding. It needs a server with ServerTLS (over plaintext,
// every stream is refused).
func (s *Server) BindIdentity(identity Identity) {
	s.cb.mu.Lock()
	defer s.cb.mu.Unlock()
	s.cb.identity = identity
}

// peerID is who is at the other end of a stream: its address and, once identified, the name
// of its certificate and the node group the certificate is bound to.
type peerID struct {
	addr, cert, group string
}

// refusal is why a peer may not have configuration: the error for the client and what to log.
type refusal struct {
	err   error
	attrs []any
}

// identify returns the peer of ctx, with the node group its verified client certificate is
// bound to; or a refusal when it has no verified certificate or the certificate no group.
func identify(ctx context.Context, identity Identity) (peerID, *refusal) {
	id := peerID{addr: "unknown"}
	p, ok := peer.FromContext(ctx)
	if ok && p.Addr != nil {
		id.addr = p.Addr.String()
	}
	var info credentials.TLSInfo
	if ok {
		info, _ = p.AuthInfo.(credentials.TLSInfo)
	}
	if len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return id, &refusal{
			err:   grpcstatus.Error(codes.Unauthenticated, "xDS needs a verified client certificate"),
			attrs: []any{"peer", id.addr, "reason", "no verified client certificate"},
		}
	}
	leaf := info.State.VerifiedChains[0][0]
	id.cert = certName(leaf)
	group, err := identity(leaf)
	if err != nil {
		return id, &refusal{
			err:   grpcstatus.Errorf(codes.PermissionDenied, "client certificate %s: %v", id.cert, err),
			attrs: []any{"peer", id.addr, "certificate", id.cert, "reason", err.Error()},
		}
	}
	id.group = group
	return id, nil
}

// check refuses a node group other than the one the peer's certificate is bound to.
func (id peerID) check(claimed string) *refusal {
	if claimed == id.group {
		return nil
	}
	return &refusal{
		err: grpcstatus.Errorf(codes.PermissionDenied, "node group %q is not the one of the client certificate (%q)", claimed, id.group),
		attrs: []any{"peer", id.addr, "group", claimed, "certificate", id.cert, "identity", id.group,
			"reason", "node group differs from the client certificate's"},
	}
}

// certName names a certificate in logs: its URI SANs (SPIFFE IDs), else its subject.
func certName(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return fmt.Sprint(c.URIs)
	}
	return c.Subject.String()
}
