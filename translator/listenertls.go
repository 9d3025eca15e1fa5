// HTTPS listeners: a Gateway listener of protocol HTTPS terminates TLS in Envoy with the
// certificates its tls.certificateRefs name (core Secrets of type kubernetes.io/tls), which Envoy
// gets over ADS as SDS Secrets of the Gateway's node group (docs/design.md, HTTPS listeners).

package translator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

const (
	// tlsInspectorName is the listener filter that reads the ClientHello's SNI and ALPN, which
	// the filter chains' server_names match.
	tlsInspectorName = "envoy.filters.listener.tls_inspector"
	// secretPrefix starts the name of every Envoy Secret: "secret/NS/NAME".
	secretPrefix = "secret/"
)

// SecretName is the name of the Envoy (SDS) Secret holding the certificate and key of the
// Kubernetes Secret ns/name.
func SecretName(ns, name string) string { return secretPrefix + ns + "/" + name }

// listenerTLS is what an accepted HTTPS listener serves: its certificates, as Envoy Secrets,
// and the validation of its clients' certificates (frontendtls.go).
type listenerTLS struct {
	secrets []*tlsv3.Secret // in certificateRefs order, each once
	// clientCA is the validation context that verifies client certificates, nil when none is
	// asked for; requireClient: a client without a valid certificate is refused
	// (AllowValidOnly)
	clientCA      *tlsv3.Secret
	requireClient bool
}

// resolveListenerTLS checks the tls of an HTTPS listener that is otherwise valid and resolves
// its certificateRefs. A listener it refuses is not served (it has no certificate to serve):
// Accepted and ResolvedRefs False with the same reason (InvalidCertificateRef, or
// RefNotPermitted for a cross-namespace ref no ReferenceGrant permits), or Accepted False
// UnsupportedValue for a mode other than Terminate. Every ref must resolve: a listener is not
// served with part of its certificates.
func (t *translation) resolveListenerTLS(li *listenerInfo) {
	l, g := li.l, li.gw.gw
	refs := func(reason, msg string) {
		li.refsReason, li.refsMsg = reason, msg
		li.refuse(reason, msg)
	}
	switch {
	case l.TLS == nil:
		refs(string(gwv1.ListenerReasonInvalidCertificateRef),
			"tls is missing: an HTTPS listener needs tls.certificateRefs naming a Secret of type kubernetes.io/tls")
		return
	case l.TLS.Mode != nil && *l.TLS.Mode != gwv1.TLSModeTerminate:
		// The API server refuses this too ("tls mode must be Terminate for protocol HTTPS").
		li.refuse(string(gwv1.ListenerReasonUnsupportedValue), fmt.Sprintf(
			"tls.mode %s: an HTTPS listener terminates TLS (Terminate); Passthrough is for protocol TLS with TLSRoutes, which mcpgate does not serve", *l.TLS.Mode))
		return
	case len(l.TLS.CertificateRefs) == 0:
		refs(string(gwv1.ListenerReasonInvalidCertificateRef),
			"tls.certificateRefs is empty: an HTTPS listener needs a Secret of type kubernetes.io/tls (tls.options alone configure no certificate)")
		return
	}
	var problems []string
	reason := ""
	seen := map[string]bool{}
	lt := &listenerTLS{}
	for i, ref := range l.TLS.CertificateRefs {
		field := "tls.certificateRefs[" + strconv.Itoa(i) + "]"
		sec, denied, msg := t.certificateRef(g, field, ref)
		if denied {
			reason = string(gwv1.ListenerReasonRefNotPermitted)
		}
		if msg != "" {
			problems = append(problems, field+": "+msg)
			continue
		}
		if !seen[sec.Name] {
			seen[sec.Name] = true
			lt.secrets = append(lt.secrets, sec)
		}
	}
	if len(problems) > 0 {
		if reason == "" {
			reason = string(gwv1.ListenerReasonInvalidCertificateRef)
		}
		t.clientValidation(li.gw, l.Port) // its refs' problems are told all the same
		refs(reason, strings.Join(problems, "; "))
		return
	}
	if t.applyClientValidation(li, lt) {
		li.tls = lt
	}
}

// certificateRef resolves a Secret reference of Gateway g at field (a listener's
// certificateRefs entry, or the Gateway's spec.tls.backend.clientCertificateRef) into an Envoy
// Secret (certificateSecret), or says what is wrong: denied when the Secret is in another
// namespace and no ReferenceGrant there permits it (Gateway API: RefNotPermitted whenever the
// reference is not allowed, before anything is said of what it names; the Secret is not read),
// else a ref to another kind or a Secret that does not serve.
func (t *translation) certificateRef(g *gwv1.Gateway, field string, ref gwv1.SecretObjectReference) (sec *tlsv3.Secret, denied bool, msg string) {
	group, kind, obj := objectRefOf(g.Namespace, "Secret", ref.Group, ref.Kind, ref.Namespace, ref.Name)
	ns, name := obj.Namespace, obj.Name
	switch {
	case ns != g.Namespace && !t.grantedFrom(KindGateway, g.Namespace, ns, group, kind, name):
		return nil, true, fmt.Sprintf("%s %s is in another namespace and no ReferenceGrant there permits Gateways of namespace %s to refer to it",
			kind, keyString(ns, name), g.Namespace)
	case group != "" || kind != "Secret":
		return nil, false, fmt.Sprintf("%s %s: only core Secrets (group \"\", kind Secret) are supported", groupKind(group, kind), keyString(ns, name))
	}
	sec, msg = t.certificateSecret(g, field, ns, name)
	return sec, false, msg
}

func groupKind(group, kind string) string {
	if group == "" {
		return kind
	}
	return group + "/" + kind
}

// listenerField is the status field path of a listener.
func listenerField(li *listenerInfo) string {
	return "spec.listeners[" + strconv.Itoa(li.index) + "]"
}

// certificateSecret reads a certificateRefs Secret into an Envoy Secret, or says what is wrong
// with it: not found, unreadable, not of type kubernetes.io/tls, without tls.crt or tls.key, or
// holding a certificate and key that crypto/tls does not pair, or a key type Envoy does not
// serve. No message shows any of the Secret's data. A Secret that could not be read again but
// was read before (Resources.SecretErrors) is used as read, with a warning.
func (t *translation) certificateSecret(g *gwv1.Gateway, field, ns, name string) (*tlsv3.Secret, string) {
	id := "Secret " + keyString(ns, name)
	s := t.secrets[key(ns, name)]
	if msg := t.unreadable(gatewayKey(g), field, id, s != nil, t.in.SecretErrors[key(ns, name)]); msg != "" {
		return nil, msg
	}
	if s.Type != corev1.SecretTypeTLS {
		typ := string(s.Type)
		if typ == "" {
			typ = string(corev1.SecretTypeOpaque)
		}
		return nil, fmt.Sprintf("%s is of type %s, not %s", id, typ, corev1.SecretTypeTLS)
	}
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	switch {
	case len(crt) == 0:
		return nil, fmt.Sprintf("%s has no %s", id, corev1.TLSCertKey)
	case len(key) == 0:
		return nil, fmt.Sprintf("%s has no %s", id, corev1.TLSPrivateKeyKey)
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		// crypto/tls's errors name what failed (no PEM data, a key that does not parse or does
		// not match the certificate), never the data.
		return nil, fmt.Sprintf("%s: %s and %s are not a certificate and its key: %v", id, corev1.TLSCertKey, corev1.TLSPrivateKeyKey, err)
	}
	if msg := envoyKeyProblem(pair.Leaf); msg != "" {
		return nil, id + ": " + msg
	}
	return &tlsv3.Secret{
		Name: SecretName(ns, name),
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(crt)}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: key}},
		}},
	}, ""
}

// gatewayKey is the ObjectKey of Gateway g.
func gatewayKey(g *gwv1.Gateway) ObjectKey {
	return ObjectKey{Kind: KindGateway, Namespace: g.Namespace, Name: g.Name}
}

// unreadable says why the object id ("Kind ns/name") that field of owner (a Gateway, a
// BackendTLSPolicy) names cannot be used: not found, or its read failed (why, from
// Resources.SecretErrors or ConfigMapErrors) and no copy read before is at hand; "" when found,
// with a warning on field when found is the copy read before and why says the last read failed.
func (t *translation) unreadable(owner ObjectKey, field, id string, found bool, why string) string {
	switch {
	case !found && why != "":
		return id + " could not be read: " + why
	case !found:
		return id + " not found"
	case why != "":
		t.st.warnings.add(owner.Kind, owner.Namespace, owner.Name, field,
			fmt.Sprintf("%s could not be read (%s): the copy read before is used", id, why))
	}
	return ""
}

// envoyKeyProblem says why Envoy would refuse to serve the certificate, "" when it would not:
// Envoy's TLS context (ContextImpl, 1.37) takes RSA keys of 2048 bits or more and ECDSA keys on
// P-256, P-384 or P-521 ("only P-256, P-384 or P-521 ECDSA certificates are supported"); other
// curves and key types, Ed25519 among them, are refused with the Secret.
func envoyKeyProblem(leaf *x509.Certificate) string {
	if leaf == nil {
		return "tls.crt holds no certificate"
	}
	switch k := leaf.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Sprintf("the certificate's RSA key has %d bits; Envoy serves RSA keys of 2048 bits or more", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() && k.Curve != elliptic.P521() {
			return fmt.Sprintf("the certificate's ECDSA key is on %s; Envoy serves ECDSA keys on P-256, P-384 or P-521", k.Curve.Params().Name)
		}
	default:
		return fmt.Sprintf("the certificate's key is of type %T; Envoy serves RSA (2048 bits or more) and ECDSA (P-256, P-384, P-521) keys", k)
	}
	return ""
}

// misdirectedSuffix ends the name of a virtual host that answers 421 in a filter chain's
// RouteConfiguration: "NS/GATEWAY/OTHER/HOSTNAME/misdirected" for the hostname of the listener
// OTHER (chainVirtualHosts).
const misdirectedSuffix = "/misdirected"

// httpsListeners returns the accepted HTTPS listeners of a Gateway's port, in spec order: each
// has a filter chain (tlsListener) and a RouteConfiguration of its own (chainRoutesName). None
// on an HTTP port (HTTP and HTTPS listeners never share a port: ProtocolConflict).
func httpsListeners(gi *gatewayInfo, port int32) []*listenerInfo {
	var out []*listenerInfo
	for _, li := range gi.listeners {
		if li.ok && li.l.Port == port && li.tls != nil {
			out = append(out, li)
		}
	}
	return out
}

// chainRoutesName is the name of the RouteConfiguration of the filter chain of the HTTPS
// listener li on the port whose Envoy listener is name: "NS/GATEWAY/PORT/LISTENER".
func chainRoutesName(name string, li *listenerInfo) string { return name + "/" + string(li.l.Name) }

// tlsListener builds the Envoy listener of a Gateway port whose listeners are HTTPS (chains,
// httpsListeners): the TLS inspector reads the ClientHello, and each Gateway listener has its
// own filter chain, matched by SNI (server_names: the listener's hostname, a wildcard as Envoy
// matches it, longest suffix first; none for a listener without hostname, whose chain takes
// every other name and ClientHellos without SNI), with its certificates over SDS (ADS) and ALPN
// h2 and http/1.1. Each chain's connection manager is routed by the chain's own
// RouteConfiguration (chainRoutesName): the listener's virtual hosts, and 421 for the Hosts of
// the other listeners (chainVirtualHosts; docs/design.md, HTTPS listeners). Statistics are the
// port's, as on HTTP ports.
func (x *xdsCommon) tlsListener(name string, port int32, chains []*listenerInfo) *listenerv3.Listener {
	l := &listenerv3.Listener{Name: name, Address: socketAddress(x.opts.BindAddress, port),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(x.bufferLimit()), FilterChains: make([]*listenerv3.FilterChain, 0, len(chains))}
	for _, li := range chains {
		ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2", "http/1.1"}}}
		for _, s := range li.tls.secrets {
			ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs = append(ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs,
				&tlsv3.SdsSecretConfig{Name: s.Name, SdsConfig: adsSource()})
		}
		if ca := li.tls.clientCA; ca != nil {
			ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: ca.Name, SdsConfig: adsSource()}}
			if li.tls.requireClient {
				ctx.RequireClientCertificate = wrapperspb.Bool(true)
			}
		}
		fc := &listenerv3.FilterChain{
			Name:            li.key,
			Filters:         x.hcmFilters(name, chainRoutesName(name, li), li.tls.clientCA != nil && li.tls.requireClient),
			TransportSocket: &corev3.TransportSocket{Name: tlsSocketName, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}},
		}
		if li.hostname != "" {
			fc.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{li.hostname}}
		}
		l.FilterChains = append(l.FilterChains, fc)
	}
	l.ListenerFilters = []*listenerv3.ListenerFilter{{
		Name:       tlsInspectorName,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
	}}
	return l
}

// gatewaySecrets returns the Envoy Secrets of a Gateway's accepted HTTPS listeners (their
// certificates and client CAs), by name, each once.
func gatewaySecrets(gi *gatewayInfo) []*tlsv3.Secret {
	var list []named[*tlsv3.Secret]
	for _, li := range gi.listeners {
		if li.ok && li.tls != nil {
			for _, s := range li.tls.secrets {
				list = append(list, named[*tlsv3.Secret]{s.Name, s})
			}
			if ca := li.tls.clientCA; ca != nil {
				list = append(list, named[*tlsv3.Secret]{ca.Name, ca})
			}
		}
	}
	return byName(list)
}

// redactedSecret returns s, or a copy of it whose private key reads RedactedValue: printed
// configuration (mcpgate translate, the admin's /debug/xds) never shows a key.
func redactedSecret(s *tlsv3.Secret) *tlsv3.Secret {
	tc := s.GetTlsCertificate()
	if tc == nil || tc.PrivateKey == nil {
		return s
	}
	out := proto.Clone(s).(*tlsv3.Secret)
	out.GetTlsCertificate().PrivateKey = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: RedactedValue}}
	return out
}

// checkTLSListener makes Envoy's checks of a listener's TLS parts beyond the proto rules: its
// listener filters' and transport sockets' typed configs, no two filter chains with the same
// match (Envoy refuses the listener: "multiple filter chains with the same matching rules"),
// and every SDS Secret a chain names (certificates, client CA) among secrets (else Envoy's
// listener never warms).
func checkTLSListener(l *listenerv3.Listener, secrets map[string]bool, check func(string, proto.Message)) []error {
	var errs []error
	for _, lf := range l.ListenerFilters {
		errs = append(errs, checkAny("listener "+l.Name+" listener filter "+lf.Name, lf.GetTypedConfig(), check)...)
	}
	matches := map[string]string{}
	for _, fc := range l.FilterChains {
		m := fmt.Sprint(fc.GetFilterChainMatch().GetServerNames())
		if other, dup := matches[m]; dup {
			errs = append(errs, fmt.Errorf("listener %s: filter chains %s and %s have the same match", l.Name, other, fc.Name))
		}
		matches[m] = fc.Name
		ts := fc.GetTransportSocket()
		if ts == nil {
			continue
		}
		what := "listener " + l.Name + " filter chain " + fc.Name + " transport socket"
		errs = append(errs, checkAny(what, ts.GetTypedConfig(), check)...)
		ctx := &tlsv3.DownstreamTlsContext{}
		if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			continue
		}
		sdsConfigs := ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()
		if v := ctx.GetCommonTlsContext().GetValidationContextSdsSecretConfig(); v != nil {
			sdsConfigs = append(slices.Clip(sdsConfigs), v)
		}
		for _, sds := range sdsConfigs {
			if !secrets[sds.Name] {
				errs = append(errs, fmt.Errorf("%s: Secret %q is missing", what, sds.Name))
			}
		}
	}
	return errs
}
