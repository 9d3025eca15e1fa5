package translator

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
)

// maxSubjectAltNames is the most names BackendTLS.verifySubjectAltNames may list (as the CRD).
const maxSubjectAltNames = 16

// upstreamTLS is how an address target (a static backend, an AI provider, a static MCP target)
// is reached over TLS; a nil one means plaintext. Its zero value is not used.
type upstreamTLS struct {
	host string   // the target's host, which the Host header is rewritten to
	port int32    // the target's port
	sni  string   // the server name of the handshake; "" sends none
	sans []string // the names the certificate must have one of; none: any name (chain only)
	// uris are URI names the certificate may have instead (a BackendTLSPolicy's subjectAltNames
	// of type URI): with sans, one name of either list must match
	uris []string
	// ca is the PEM bundle the chain is verified against (a BackendTLSPolicy's
	// caCertificateRefs); "" is Options.UpstreamCAFile, the system's
	ca string
	// verify is false under insecureSkipVerify All: no validation context, nothing verified
	verify bool
	// h2 offers ALPN h2 only: the cluster speaks HTTP/2 (a Service port with appProtocol
	// kubernetes.io/h2c reached over TLS), which a TLS server selects by ALPN
	h2 bool
}

// tlsFor is the TLS of a target at host:port with the settings p (nil: none), which checkTLS
// accepted: TLS when p is set or the port is 443, else nil (plaintext).
func tlsFor(host string, port int32, p *v1alpha1.BackendTLS) *upstreamTLS {
	if p == nil && port != httpsPort {
		return nil
	}
	u := &upstreamTLS{host: host, port: port, verify: true}
	// A name is sent as SNI, and is the name to verify, without the final dot of a fully
	// qualified name (certificates name hosts without it); an IP address is not sent (RFC 6066
	// allows names only).
	name := strings.TrimSuffix(host, ".")
	if !isIP(host) {
		u.sni = name
	}
	if p != nil && p.SNI != nil {
		u.sni = *p.SNI
	}
	switch {
	case p != nil && p.InsecureSkipVerify != nil && *p.InsecureSkipVerify == v1alpha1.InsecureTLSModeAll:
		u.verify = false
	case p != nil && p.InsecureSkipVerify != nil: // Hostname: the chain, not the names
	case p != nil && len(p.VerifySubjectAltNames) > 0:
		u.sans = p.VerifySubjectAltNames
	default:
		u.sans = []string{name}
	}
	return u
}

// hostHeader is the Host header of the requests sent over TLS: the target's host, a server
// reached by name serving (and checking) that name rather than the gateway's, with the port
// unless it is HTTPS's 443 (RFC 9110, 7.2: the port is left out only when it is the scheme's
// default) and an IPv6 address in brackets.
func (u *upstreamTLS) hostHeader() string {
	if u.port == httpsPort {
		if strings.Contains(u.host, ":") {
			return "[" + u.host + "]"
		}
		return u.host
	}
	return joinHostPort(u.host, u.port)
}

// key identifies the transport socket of u: equal keys, equal sockets.
func (u *upstreamTLS) key() string {
	return strconv.FormatBool(u.verify) + strconv.FormatBool(u.h2) + "\x00" + u.sni + "\x00" + strings.Join(u.sans, "\x00") +
		"\x01" + strings.Join(u.uris, "\x00") + "\x01" + u.ca
}

// describe is what a backend's Accepted condition says of u.
func (u *upstreamTLS) describe() string {
	switch {
	case !u.verify:
		return "over TLS, the certificate not verified (insecureSkipVerify All)"
	case len(u.sans) == 0 && len(u.uris) == 0:
		return "over TLS, the certificate verified against the CA bundle but not its names (insecureSkipVerify Hostname)"
	}
	return "over TLS, the certificate verified for " + strings.Join(slices.Concat(u.sans, u.uris), ", ")
}

// checkTLS validates a BackendTLS (nil passes): it returns the field at fault below the tls
// field (".sni" etc., "" for the settings as a whole) and what is wrong, or "", "" when the
// settings are usable. The CRD refuses the same in Kubernetes; the files of standalone mode have
// no CRD to check them.
func checkTLS(p *v1alpha1.BackendTLS) (field, msg string) {
	if p == nil {
		return "", ""
	}
	if p.InsecureSkipVerify != nil && p.VerifySubjectAltNames != nil {
		return "", "insecureSkipVerify and verifySubjectAltNames may not be set together"
	}
	if p.SNI != nil {
		switch s := *p.SNI; {
		case s == "":
			return ".sni", "must not be empty (leave it out to send the host)"
		case isIP(s):
			return ".sni", fmt.Sprintf("%q is an IP address; a server name is a DNS name (RFC 6066)", s)
		case !validDNSName(s):
			return ".sni", fmt.Sprintf("%q is not a DNS name", s)
		}
	}
	if v := p.InsecureSkipVerify; v != nil {
		// An empty mode is no mode (tlsFor would take it for Hostname): unsupported, which takes
		// "" for an unset enum, is asked about it quoted.
		mode := *v
		if mode == "" {
			mode = `""`
		}
		if msg := unsupported(mode, v1alpha1.InsecureTLSModeAll, v1alpha1.InsecureTLSModeHostname); msg != "" {
			return ".insecureSkipVerify", msg
		}
	}
	switch n := len(p.VerifySubjectAltNames); {
	case p.VerifySubjectAltNames != nil && n == 0:
		return ".verifySubjectAltNames", "at least one name is required (leave it out to verify the host)"
	case n > maxSubjectAltNames:
		return ".verifySubjectAltNames", fmt.Sprintf("%d names, at most %d are allowed", n, maxSubjectAltNames)
	}
	for i, s := range p.VerifySubjectAltNames {
		if !isIP(s) && !validDNSName(s) {
			return ".verifySubjectAltNames[" + strconv.Itoa(i) + "]", fmt.Sprintf("%q is neither a DNS name nor an IP address", s)
		}
	}
	return "", ""
}

// tlsSocket is Envoy's transport socket for u, one per distinct setting (key) in a translation.
// Envoy's UpstreamTlsContext (api/envoy/extensions/transport_sockets/tls/v3/tls.proto) sends sni
// as the server name when set, none when empty; without a validation_context it verifies nothing
// (any certificate passes); with one, it verifies the chain against trusted_ca (a file, the
// system bundle; or inline, a BackendTLSPolicy's CA certificates) and, only when
// match_typed_subject_alt_names is set, that a SAN of the certificate matches one of them (a
// DNS matcher compares DNS SANs, a wildcard SAN covering one label; an IP_ADDRESS matcher the
// IP SANs; a URI matcher the URI SANs, exactly): never the SNI itself.
func (x *xdsCommon) tlsSocket(u *upstreamTLS) *corev3.TransportSocket {
	k := u.key()
	x.tlsMu.Lock()
	defer x.tlsMu.Unlock()
	if s, ok := x.tlsByKey[k]; ok {
		return s
	}
	ctx := &tlsv3.UpstreamTlsContext{Sni: u.sni, CommonTlsContext: &tlsv3.CommonTlsContext{}}
	if u.h2 {
		// Envoy offers no ALPN unless told; a server then speaks HTTP/1.1 over TLS
		ctx.CommonTlsContext.AlpnProtocols = []string{"h2"}
	}
	if u.verify {
		vc := &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: x.opts.UpstreamCAFile}},
		}
		if u.ca != "" {
			vc.TrustedCa = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: u.ca}}
		}
		for _, n := range u.sans {
			san := tlsv3.SubjectAltNameMatcher_DNS
			if a, err := netip.ParseAddr(n); err == nil {
				// Envoy compares an IP SAN in its text form (inet_ntop's, RFC 5952 for IPv6)
				san, n = tlsv3.SubjectAltNameMatcher_IP_ADDRESS, a.String()
			}
			vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
				SanType: san,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: n}},
			})
		}
		for _, n := range u.uris {
			vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
				SanType: tlsv3.SubjectAltNameMatcher_URI,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: n}},
			})
		}
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
	}
	s := &corev3.TransportSocket{Name: tlsSocketName, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
	x.tlsByKey[k] = s
	return s
}

// withTLS makes tg's cluster connect over TLS and its routes rewrite the Host header to the
// target's, when tls is set (nil: plaintext, nothing changes).
func (x *xdsCommon) withTLS(tg *target, tls *upstreamTLS) {
	if tls == nil {
		return
	}
	tg.cluster.TransportSocket = x.tlsSocket(tls)
	tg.hostRewrite = tls.hostHeader()
}

// policiesTLS is p.TLS, nil when p is.
func policiesTLS(p *v1alpha1.BackendPolicies) *v1alpha1.BackendTLS {
	if p == nil {
		return nil
	}
	return p.TLS
}

// targetTLS is a static MCP target's policies.tls, nil when unset.
func targetTLS(st *v1alpha1.McpTarget) *v1alpha1.BackendTLS {
	if st.Policies == nil {
		return nil
	}
	return st.Policies.TLS
}
