package dataplane

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// peerAttribute evaluates a connection attribute of the downstream client certificate as Envoy
// does (filters/common/expr context.cc, extractSslInfo, and the attribute docs):
//   - connection.mtls: a bool, true when the connection is TLS and the peer presented a
//     certificate;
//   - on a plaintext connection every other one is absent (no SSL info);
//   - on TLS, connection.subject_peer_certificate is the subject as a string, "" without a
//     certificate; connection.uri_san_peer_certificate and connection.dns_san_peer_certificate
//     are the first URI and the first DNS SAN, absent when there is none;
//     connection.sha256_peer_certificate_digest is the lower-case hex SHA-256 of the DER
//     certificate, absent without a certificate.
//
// Envoy says nothing of whether the certificate was verified: under ACCEPT_UNTRUSTED an
// unverified one is described the same way.
func peerAttribute(cs *tls.ConnectionState, expr string) (*structpb.Value, bool) {
	if expr == "connection.mtls" {
		return structpb.NewBoolValue(cs != nil && len(cs.PeerCertificates) > 0), true
	}
	if cs == nil {
		return nil, false
	}
	var p peerCert
	if len(cs.PeerCertificates) > 0 {
		p = peerCertOf(cs)
	}
	var v string
	switch expr {
	case "connection.subject_peer_certificate":
		return structpb.NewStringValue(p.subject), true
	case "connection.uri_san_peer_certificate":
		if len(p.uris) > 0 {
			v = p.uris[0]
		}
	case "connection.dns_san_peer_certificate":
		if len(p.dns) > 0 {
			v = p.dns[0]
		}
	case "connection.sha256_peer_certificate_digest":
		v = p.hash
	}
	if v == "" {
		return nil, false
	}
	return structpb.NewStringValue(v), true
}

// peerCert is what Envoy's SSL connection info says of a downstream client certificate.
type peerCert struct {
	// subject is the subject in RFC 2253 form (Envoy prints it with X509_NAME_print_ex and
	// XN_FLAG_RFC2253: most specific RDN first, "," between RDNs; Go's pkix.Name.String
	// follows the same RFC for the attributes test certificates use)
	subject string
	// uris and dns are the URI and DNS SANs in certificate order
	uris, dns []string
	// hash is the lower-case hex SHA-256 of the DER certificate
	hash string
}

// peerCertOf describes the connection's leaf client certificate (cs.PeerCertificates not empty).
func peerCertOf(cs *tls.ConnectionState) peerCert {
	c := cs.PeerCertificates[0]
	sum := sha256.Sum256(c.Raw)
	p := peerCert{subject: c.Subject.ToRDNSequence().String(), dns: c.DNSNames, hash: hex.EncodeToString(sum[:])}
	for _, u := range c.URIs {
		p.uris = append(p.uris, u.String())
	}
	return p
}

// setXFCC applies forward_client_cert_details to the request's x-forwarded-client-cert as
// ConnectionManagerUtility::mutateXfccRequestHeader does: ALWAYS_FORWARD_ONLY leaves it as it
// comes, whatever the connection; SANITIZE, or a connection without a
// client certificate, removes it; SANITIZE_SET replaces it with one element of the connection's
// certificate: Envoy starts with By=<each URI SAN of the listener's own certificate>, which the
// double leaves out (a listener certificate with URI SANs would differ here), then Hash=<digest>, then in this order the details
// asked for: Subject="<subject>" (always, even empty), URI=<each URI SAN> (a bare "URI=" when
// there is none), DNS=<each DNS SAN> (nothing when there is none), joined with ";". Envoy
// escapes nothing in the values.
func setXFCC(h *headers.Map, x xdsconf.XFCC, cs *tls.ConnectionState) {
	const name = "x-forwarded-client-cert"
	if x.Forward {
		return
	}
	h.Del(name)
	if !x.Set || cs == nil || len(cs.PeerCertificates) == 0 {
		return
	}
	p := peerCertOf(cs)
	parts := []string{"Hash=" + p.hash}
	if x.Subject {
		parts = append(parts, `Subject="`+p.subject+`"`)
	}
	if x.URI {
		if len(p.uris) == 0 {
			parts = append(parts, "URI=")
		}
		for _, u := range p.uris {
			parts = append(parts, "URI="+u)
		}
	}
	if x.DNS {
		for _, d := range p.dns {
			parts = append(parts, "DNS="+d)
		}
	}
	h.Set(name, strings.Join(parts, ";"))
}
