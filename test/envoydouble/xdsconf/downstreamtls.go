package xdsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
)

// SecretType is the SDS type URL: Envoy asks for the Secrets its listeners' TLS contexts name.
const SecretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

const tlsInspectorName = "envoy.filters.listener.tls_inspector"

// Secret is an SDS Secret: a TLS certificate and its key (tls_certificate), or the CA
// certificates that verify client certificates (validation_context: ClientCA set, Cert empty).
type Secret struct {
	Name     string
	Cert     tls.Certificate
	ClientCA *ClientCA
}

// ClientCA is a validation_context Secret as a listener's TLS context uses it to verify client
// certificates.
type ClientCA struct {
	// Pool holds the certificates of trusted_ca: trust anchors whether self-signed or not, as
	// Envoy's DefaultCertValidator sets X509_V_FLAG_PARTIAL_CHAIN
	Pool *x509.CertPool
	// AcceptUntrusted is trust_chain_verification ACCEPT_UNTRUSTED: a certificate that fails
	// verification is accepted (Envoy still asks for a certificate)
	AcceptUntrusted bool
}

// CompileSecret checks and compiles a Secret: a tls_certificate with certificate_chain and
// private_key (PEM), which must pair, as Envoy's TLS context refuses a certificate whose key
// does not match (the Secret update is NACKed); or a validation_context with trusted_ca and
// trust_chain_verification (compileClientCA). Other Secret kinds (session ticket keys, generic
// secrets), other validation fields and private key providers are refused.
func CompileSecret(s *tlsv3.Secret) (*Secret, error) {
	path := fmt.Sprintf("secret %q", s.GetName())
	if err := validate(s, path); err != nil {
		return nil, err
	}
	if err := checkFields(s, path, "name", "tls_certificate", "validation_context"); err != nil {
		return nil, err
	}
	if vc := s.GetValidationContext(); vc != nil {
		ca, err := compileClientCA(vc, path+".validation_context")
		if err != nil {
			return nil, err
		}
		return &Secret{Name: s.GetName(), ClientCA: ca}, nil
	}
	if s.GetTlsCertificate() == nil {
		return nil, fmt.Errorf("%s: only tls_certificate and validation_context are implemented by envoydouble", path)
	}
	cert, err := compileClientCertificate([]*tlsv3.TlsCertificate{s.GetTlsCertificate()}, path)
	if err != nil {
		return nil, err
	}
	return &Secret{Name: s.GetName(), Cert: *cert}, nil
}

// sdsSecretName reads an SDS Secret reference of a TLS context (at path): the name of a Secret
// that comes over ADS, the only SDS source the double implements.
func sdsSecretName(sds *tlsv3.SdsSecretConfig, path string) (string, error) {
	if err := checkFields(sds, path, "name", "sds_config"); err != nil {
		return "", err
	}
	if err := checkFields(sds.GetSdsConfig(), path+".sds_config", "ads", "resource_api_version"); err != nil {
		return "", err
	}
	if sds.GetSdsConfig().GetAds() == nil {
		return "", fmt.Errorf("%s.sds_config: only ads is implemented by envoydouble", path)
	}
	return sds.GetName(), nil
}

// compileClientCA compiles a validation context that verifies client certificates: trusted_ca
// (required: without it Envoy verifies no chain, which the double does not reproduce) loaded as
// Envoy loads it (DefaultCertValidator: PEM_X509_INFO_read_bio fails the whole bundle on a block
// that does not decode, and a bundle without a certificate is refused, "Failed to load trusted CA
// certificates"; CRLs in it, which Envoy would apply, are not implemented), and
// trust_chain_verification. SAN matchers, hashes, CRLs and the other fields are refused.
func compileClientCA(vc *tlsv3.CertificateValidationContext, path string) (*ClientCA, error) {
	if err := checkFields(vc, path, "trusted_ca", "trust_chain_verification"); err != nil {
		return nil, err
	}
	if vc.GetTrustedCa() == nil {
		return nil, fmt.Errorf("%s.trusted_ca: required by envoydouble (a validation context without it verifies no chain)", path)
	}
	data, err := dataSource(vc.GetTrustedCa(), path+".trusted_ca")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	certs, blocks := 0, 0
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		blocks++
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s.trusted_ca: PEM block %d is %s: only certificates are implemented by envoydouble", path, blocks, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s.trusted_ca: Failed to load trusted CA certificates: certificate %d: %w", path, blocks, err)
		}
		pool.AddCert(c)
		certs++
	}
	switch {
	case bytes.Count(data, []byte("-----BEGIN ")) > blocks: // pem.Decode skips a block it cannot decode
		return nil, fmt.Errorf("%s.trusted_ca: Failed to load trusted CA certificates: a PEM block does not decode", path)
	case certs == 0:
		return nil, fmt.Errorf("%s.trusted_ca: Failed to load trusted CA certificates: no certificate", path)
	}
	return &ClientCA{Pool: pool, AcceptUntrusted: vc.GetTrustChainVerification() == tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED}, nil
}

// ListenerTLS is a listener's TLS termination: its filter chains, each chosen by SNI.
type ListenerTLS struct {
	Chains []*TLSChain
}

// TLSChain is one filter chain of a TLS listener.
type TLSChain struct {
	// Name is the filter chain's name.
	Name string
	// ServerNames is filter_chain_match.server_names: exact names or "*.suffix" wildcards;
	// none: the chain takes the names no other chain matches, and ClientHellos without SNI.
	ServerNames []string
	// Secrets are the names of the SDS Secrets of tls_certificate_sds_secret_configs.
	Secrets []string
	// ALPN is common_tls_context.alpn_protocols.
	ALPN []string
	// ClientCA is the name of the SDS Secret of validation_context_sds_secret_config, the
	// validation context that verifies client certificates ("": none asked for);
	// RequireClientCert is require_client_certificate.
	ClientCA          string
	RequireClientCert bool
	// RDSName is the chain's connection manager's rds.route_config_name ("" for an inline
	// route_config): each chain routes by its own, as Envoy's chains do.
	RDSName string
}

// compileListenerTLS compiles a listener's listener filters and filter chains when they
// terminate TLS: only the TLS inspector as listener filter; every chain with the TLS transport
// socket, the same connection manager but for its rds.route_config_name (the double serves one
// HCM per listener; each chain routes by its own RouteConfiguration), at most a
// filter_chain_match.server_names, no two chains with the same match (Envoy refuses "multiple
// filter chains with the same matching rules"), and a DownstreamTlsContext whose certificates
// come over SDS from ADS, with alpn_protocols and, to verify client certificates, a validation
// context over SDS (validation_context_sds_secret_config) and require_client_certificate. It
// returns nil for a listener with one plaintext chain and no listener filters (the caller
// compiles it).
func compileListenerTLS(l *listenerv3.Listener, path string) (*ListenerTLS, error) {
	chains := l.GetFilterChains()
	tlsChains := len(l.GetListenerFilters()) > 0 || len(chains) > 1
	for _, fc := range chains {
		tlsChains = tlsChains || fc.GetTransportSocket() != nil || fc.GetFilterChainMatch() != nil
	}
	if !tlsChains {
		return nil, nil
	}
	inspector := false
	for i, lf := range l.GetListenerFilters() {
		p := join(path, idx("listener_filters", i))
		if err := checkFields(lf, p, "name", "typed_config"); err != nil {
			return nil, err
		}
		var ti tlsinspectorv3.TlsInspector
		if err := unpack(lf.GetTypedConfig(), &ti, p+".typed_config"); err != nil {
			return nil, err
		}
		if err := checkFields(&ti, p+".typed_config"); err != nil {
			return nil, err
		}
		inspector = true
	}
	if len(chains) == 0 {
		return nil, fmt.Errorf("%s.filter_chains: none", path)
	}
	out := &ListenerTLS{}
	seen := map[string]string{}
	first, _ := chainHCM(chains[0])
	for i, fc := range chains {
		fp := join(path, idx("filter_chains", i))
		if err := checkFields(fc, fp, "filters", "name", "metadata", "filter_chain_match", "transport_socket"); err != nil {
			return nil, err
		}
		hcm, rds := chainHCM(fc)
		if i > 0 && (hcm == nil || first == nil || !proto.Equal(hcm, first)) &&
			!proto.Equal(&listenerv3.FilterChain{Filters: fc.GetFilters()}, &listenerv3.FilterChain{Filters: chains[0].GetFilters()}) {
			return nil, fmt.Errorf("%s.filters: filter chains with different filters (beyond the connection manager's rds.route_config_name) are not implemented by envoydouble", fp)
		}
		c := &TLSChain{Name: fc.GetName(), RDSName: rds}
		if m := fc.GetFilterChainMatch(); m != nil {
			if err := checkFields(m, fp+".filter_chain_match", "server_names"); err != nil {
				return nil, err
			}
			c.ServerNames = m.GetServerNames()
			if len(c.ServerNames) > 0 && !inspector {
				// Envoy reads the SNI only with the TLS inspector: without it no chain with
				// server_names ever matches, which the double does not reproduce.
				return nil, fmt.Errorf("%s.filter_chain_match.server_names: without the %s listener filter, not implemented by envoydouble", fp, tlsInspectorName)
			}
		}
		key := strings.Join(slices.Sorted(slices.Values(c.ServerNames)), ",")
		if other, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s: multiple filter chains with the same matching rules are defined (%q and %q)", fp, other, fc.GetName())
		}
		seen[key] = fc.GetName()
		ts := fc.GetTransportSocket()
		if ts == nil {
			return nil, fmt.Errorf("%s.transport_socket: plaintext chains beside TLS ones are not implemented by envoydouble", fp)
		}
		tp := fp + ".transport_socket"
		if err := checkFields(ts, tp, "name", "typed_config"); err != nil {
			return nil, err
		}
		if ts.GetName() != tlsTransportSocket {
			return nil, fmt.Errorf("%s.name: %q not implemented by envoydouble (%s)", tp, ts.GetName(), tlsTransportSocket)
		}
		var ctx tlsv3.DownstreamTlsContext
		if err := unpack(ts.GetTypedConfig(), &ctx, tp+".typed_config"); err != nil {
			return nil, err
		}
		cp := tp + ".typed_config"
		if err := validate(&ctx, cp); err != nil {
			return nil, err
		}
		if err := checkFields(&ctx, cp, "common_tls_context", "require_client_certificate"); err != nil {
			return nil, err
		}
		common := ctx.GetCommonTlsContext()
		if err := checkFields(common, cp+".common_tls_context", "tls_certificate_sds_secret_configs", "alpn_protocols", "validation_context_sds_secret_config"); err != nil {
			return nil, err
		}
		for j, sds := range common.GetTlsCertificateSdsSecretConfigs() {
			name, err := sdsSecretName(sds, join(cp+".common_tls_context", idx("tls_certificate_sds_secret_configs", j)))
			if err != nil {
				return nil, err
			}
			c.Secrets = append(c.Secrets, name)
		}
		if sds := common.GetValidationContextSdsSecretConfig(); sds != nil {
			name, err := sdsSecretName(sds, cp+".common_tls_context.validation_context_sds_secret_config")
			if err != nil {
				return nil, err
			}
			c.ClientCA = name
		}
		c.RequireClientCert = ctx.GetRequireClientCertificate().GetValue()
		if c.RequireClientCert && c.ClientCA == "" {
			return nil, fmt.Errorf("%s.require_client_certificate: without a validation context (validation_context_sds_secret_config) not implemented by envoydouble", cp)
		}
		if len(c.Secrets) == 0 {
			return nil, fmt.Errorf("%s.common_tls_context: a server context needs a certificate (tls_certificate_sds_secret_configs; inline tls_certificates are not implemented by envoydouble)", cp)
		}
		for _, p := range common.GetAlpnProtocols() {
			if p != "h2" && p != "http/1.1" {
				return nil, fmt.Errorf("%s.common_tls_context.alpn_protocols: %q not implemented by envoydouble (h2, http/1.1)", cp, p)
			}
		}
		c.ALPN = common.GetAlpnProtocols()
		out.Chains = append(out.Chains, c)
	}
	return out, nil
}

// chainHCM returns the connection manager of a chain whose one filter is one, with its
// rds.route_config_name cleared, and that name; nil when the chain is not so (CompileListener
// reports it).
func chainHCM(fc *listenerv3.FilterChain) (*hcmv3.HttpConnectionManager, string) {
	fs := fc.GetFilters()
	if len(fs) != 1 || fs[0].GetName() != hcmName {
		return nil, ""
	}
	var h hcmv3.HttpConnectionManager
	if fs[0].GetTypedConfig().UnmarshalTo(&h) != nil {
		return nil, ""
	}
	name := h.GetRds().GetRouteConfigName()
	if h.GetRds() != nil {
		h.GetRds().RouteConfigName = ""
	}
	return &h, name
}

// RDSNames lists the route configurations the listener's chains name (none when t is nil).
func (t *ListenerTLS) RDSNames() []string {
	if t == nil {
		return nil
	}
	var out []string
	for _, c := range t.Chains {
		if c.RDSName != "" && !slices.Contains(out, c.RDSName) {
			out = append(out, c.RDSName)
		}
	}
	return out
}

// Select picks the filter chain of a ClientHello's SNI as Envoy's filter chain matching does
// (FilterChainManagerImpl: server names before the chains without): the chain naming sni
// exactly, else the one with the longest wildcard suffix ("*.b.example.com", then
// "*.example.com", then "*.com" for "a.b.example.com"), else the chain without server_names;
// nil when none (Envoy closes the connection).
func (t *ListenerTLS) Select(sni string) *TLSChain {
	sni = strings.ToLower(strings.TrimSuffix(sni, "."))
	has := func(name string) *TLSChain {
		for _, c := range t.Chains {
			if slices.Contains(c.ServerNames, name) {
				return c
			}
		}
		return nil
	}
	if sni != "" {
		if c := has(sni); c != nil {
			return c
		}
		for rest := sni; ; {
			i := strings.IndexByte(rest, '.')
			if i < 0 {
				break
			}
			rest = rest[i+1:]
			if c := has("*." + rest); c != nil {
				return c
			}
		}
	}
	for _, c := range t.Chains {
		if len(c.ServerNames) == 0 {
			return c
		}
	}
	return nil
}

// MissingSecrets lists the Secrets the listener's chains name (certificates, client CAs) that
// secrets lacks: Envoy keeps
// such a listener warming (not serving) until they arrive.
func (t *ListenerTLS) MissingSecrets(secrets map[string]*Secret) []string {
	if t == nil {
		return nil
	}
	var out []string
	for _, c := range t.Chains {
		names := c.Secrets
		if c.ClientCA != "" {
			names = append(slices.Clip(names), c.ClientCA)
		}
		for _, n := range names {
			if secrets[n] == nil && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}
