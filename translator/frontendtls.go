// Client certificate validation (mutual TLS) of HTTPS listeners: Gateway API's
// Gateway.spec.tls.frontend (Core in Gateway API v1.6). The validation of a listener is its
// port's perPort entry, else the default; its caCertificateRefs name core ConfigMaps whose key
// ca.crt holds PEM CA certificates. Envoy gets them over ADS as an SDS Secret of type
// validation_context, one per port (docs/design.md, Client certificates).

package translator

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

const (
	// clientCAPrefix starts the name of every Envoy Secret holding client CA certificates:
	// "client-ca/NS/GATEWAY/PORT" (a Kubernetes Secret's is "secret/NS/NAME").
	clientCAPrefix = "client-ca/"
	// caCertKey is the ConfigMap key that holds the CA certificates (Gateway API: "a ConfigMap,
	// with the CA certificate in a key named `ca.crt`").
	caCertKey = "ca.crt"
	// kindConfigMap is the kind caCertificateRefs name.
	kindConfigMap = "ConfigMap"
)

// ClientCASecretName is the name of the Envoy (SDS) Secret, a validation context, holding the CA
// certificates that verify client certificates on port of Gateway ns/gateway.
func ClientCASecretName(ns, gateway string, port int32) string {
	return clientCAPrefix + ns + "/" + gateway + "/" + strconv.Itoa(int(port))
}

// clientValidation is one client certificate validation of a Gateway (spec.tls.frontend's
// default, or a perPort entry's), resolved once for all the HTTPS listeners it applies to.
type clientValidation struct {
	// bundle is the certificates of the valid caCertificateRefs as PEM, each once, in ref order;
	// "" when none is valid
	bundle string
	// insecure is mode AllowInsecureFallback: a client certificate is asked for, not required,
	// and one that fails verification is accepted
	insecure bool
	// refsReason and refsMsg are the ResolvedRefs False of its listeners when some ref is invalid
	refsReason, refsMsg string
	// refusal and refusalMsg are the Accepted False of its listeners (NoValidCACertificate,
	// UnsupportedValue); "" when they are served
	refusal, refusalMsg string
}

// frontendField is the field of the validation that applies to the HTTPS listeners of port of
// g: its perPort entry's, else the default's (Gateway API: "Once set this configuration
// overrides the default configuration for all Listeners handling HTTPS traffic that match this
// port"). v is nil when none validates client certificates there (no spec.tls.frontend, no
// validation in the entry that applies). dup says that two perPort entries name the port, which
// the API server refuses ("Port for TLS configuration must be unique"); files meet none.
func frontendField(g *gwv1.Gateway, port int32) (v *gwv1.FrontendTLSValidation, field, dup string) {
	if g.Spec.TLS == nil || g.Spec.TLS.Frontend == nil {
		return nil, "", ""
	}
	f := g.Spec.TLS.Frontend
	found := -1
	for i := range f.PerPort {
		if f.PerPort[i].Port != port {
			continue
		}
		if found >= 0 {
			return nil, "spec.tls.frontend.perPort[" + strconv.Itoa(i) + "]", fmt.Sprintf(
				"perPort[%d] and perPort[%d] both configure port %d: a port takes one configuration", found, i, port)
		}
		found = i
	}
	if found >= 0 {
		return f.PerPort[found].TLS.Validation, "spec.tls.frontend.perPort[" + strconv.Itoa(found) + "].tls.validation", ""
	}
	return f.Default.Validation, "spec.tls.frontend.default.validation", ""
}

// clientValidation returns the client certificate validation of the HTTPS listeners of port of
// gi, nil when there is none. It is resolved once per Gateway and field; each invalid ref is a
// refusal of the Gateway naming its field. Gateway API: a ref is invalid when it cannot be
// resolved or is misconfigured (InvalidCACertificateRef: a ConfigMap not found, without ca.crt,
// whose ca.crt holds no certificate that parses), of a kind not supported
// (InvalidCACertificateKind: anything but a core ConfigMap) or in another namespace without a
// ReferenceGrant (RefNotPermitted); "ResolvedRefs" is then False on all the listeners it
// applies to, and when all refs are invalid "Accepted" too, reason NoValidCACertificate: they are
// not served, since a client could not be verified (fail closed). A listener is served with the
// valid refs when some are.
func (t *translation) clientValidation(gi *gatewayInfo, port int32) *clientValidation {
	v, field, dup := frontendField(gi.gw, port)
	if v == nil && dup == "" {
		return nil
	}
	return t.resolveValidation(gi, v, field, dup)
}

// resolveValidation resolves the validation v of gi at field (or refuses the duplicate perPort
// entry dup), once per field, reporting each invalid ref as clientValidation says.
func (t *translation) resolveValidation(gi *gatewayInfo, v *gwv1.FrontendTLSValidation, field, dup string) *clientValidation {
	if cv := gi.clientCAs[field]; cv != nil {
		return cv
	}
	cv := &clientValidation{}
	if gi.clientCAs == nil {
		gi.clientCAs = map[string]*clientValidation{}
	}
	gi.clientCAs[field] = cv
	g := gi.gw
	refuse := func(field, msg string) { t.st.refuse(KindGateway, g.Namespace, g.Name, field, msg) }
	if dup != "" {
		cv.refusal, cv.refusalMsg = string(gwv1.ListenerReasonUnsupportedValue), field+": "+dup
		refuse(field, dup)
		return cv
	}
	if msg := unsupported(v.Mode, gwv1.AllowValidOnly, gwv1.AllowInsecureFallback); msg != "" {
		cv.refusal, cv.refusalMsg = string(gwv1.ListenerReasonUnsupportedValue), field+".mode: "+msg
		refuse(field+".mode", msg)
		return cv
	}
	cv.insecure = v.Mode == gwv1.AllowInsecureFallback
	var problems []string
	var pemOut bytes.Buffer
	seen := map[string]bool{}
	for i, ref := range v.CACertificateRefs {
		rf := field + ".caCertificateRefs[" + strconv.Itoa(i) + "]"
		group, kind, obj := objectRefOf(g.Namespace, "", &ref.Group, &ref.Kind, ref.Namespace, ref.Name)
		ns, name := obj.Namespace, obj.Name
		var reason, msg string
		var certs []*x509.Certificate
		switch {
		case ns != g.Namespace && !t.grantedFrom(KindGateway, g.Namespace, ns, group, kind, name):
			reason = string(gwv1.ListenerReasonRefNotPermitted)
			msg = fmt.Sprintf("%s %s is in another namespace and no ReferenceGrant there permits Gateways of namespace %s to refer to it",
				groupKind(group, kind), keyString(ns, name), g.Namespace)
		case group != "" || kind != kindConfigMap:
			reason = string(gwv1.ListenerReasonInvalidCACertificateKind)
			msg = fmt.Sprintf("%s %s: only core ConfigMaps (group \"\", kind ConfigMap) holding the CA certificates in key %s are supported",
				groupKind(group, kind), keyString(ns, name), caCertKey)
		default:
			reason = string(gwv1.ListenerReasonInvalidCACertificateRef)
			certs, msg = t.caConfigMap(gatewayKey(g), rf, ns, name)
		}
		if msg != "" {
			problems = append(problems, rf+": "+msg)
			cv.refsReason = worseCARefReason(cv.refsReason, reason)
			refuse(rf, msg)
			continue
		}
		appendPEM(&pemOut, seen, certs)
	}
	if len(v.CACertificateRefs) == 0 {
		// The API server refuses this too (MinItems 1).
		msg := "no ref: name a ConfigMap holding the CA certificates in key " + caCertKey
		problems = append(problems, field+".caCertificateRefs: "+msg)
		cv.refsReason = string(gwv1.ListenerReasonInvalidCACertificateRef)
		refuse(field+".caCertificateRefs", msg)
	}
	cv.refsMsg = strings.Join(problems, "; ")
	cv.bundle = pemOut.String()
	if cv.bundle == "" {
		cv.refusal = string(gwv1.ListenerReasonNoValidCACertificate)
		cv.refusalMsg = fmt.Sprintf("no valid CA certificate in %s.caCertificateRefs (see ResolvedRefs): client certificates cannot be verified, so the listener is not served", field)
	}
	return cv
}

// appendPEM appends each of certs to out as a PEM block, unless seen holds it already.
func appendPEM(out *bytes.Buffer, seen map[string]bool, certs []*x509.Certificate) {
	for _, c := range certs {
		if !seen[string(c.Raw)] {
			seen[string(c.Raw)] = true
			_ = pem.Encode(out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}) // a bytes.Buffer does not fail
		}
	}
}

// worseCARefReason is the ResolvedRefs reason of listeners with refs of reasons a and b: not
// permitted before an unsupported kind before any other problem, as certificateRefs'.
func worseCARefReason(a, b string) string {
	rank := func(r string) int {
		switch r {
		case string(gwv1.ListenerReasonRefNotPermitted):
			return 3
		case string(gwv1.ListenerReasonInvalidCACertificateKind):
			return 2
		case "":
			return 0
		}
		return 1
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// caConfigMap reads the CA certificates of the ConfigMap ns/name (key ca.crt, in data or
// binaryData), or says what is wrong with it: not found, unreadable, without ca.crt, or a ca.crt
// Envoy would not load (caCertificates). A ConfigMap that could not be read again but was read
// before (Resources.ConfigMapErrors) is used as read, with a warning on field of owner (the
// Gateway or BackendTLSPolicy that names it).
func (t *translation) caConfigMap(owner ObjectKey, field, ns, name string) ([]*x509.Certificate, string) {
	id := kindConfigMap + " " + keyString(ns, name)
	c := t.configMaps[key(ns, name)]
	if msg := t.unreadable(owner, field, id, c != nil, t.in.ConfigMapErrors[key(ns, name)]); msg != "" {
		return nil, msg
	}
	data, ok := c.Data[caCertKey]
	if !ok {
		b, inBinary := c.BinaryData[caCertKey]
		if !inBinary {
			return nil, fmt.Sprintf("%s has no key %s", id, caCertKey)
		}
		data = string(b)
	}
	certs, msg := caCertificates([]byte(data))
	if msg != "" {
		return nil, id + ": " + caCertKey + " " + msg
	}
	return certs, ""
}

// caCertificates parses a PEM CA bundle as Envoy loads a trusted_ca (its PEM_X509_INFO_read_bio
// fails the whole bundle on a block that does not decode, and a bundle without a certificate:
// "Failed to load trusted CA certificates"), or says why it would not load. Text around the
// blocks is ignored, as Envoy ignores it; blocks other than CERTIFICATE are refused (a key has
// no business in a CA bundle).
func caCertificates(data []byte) ([]*x509.Certificate, string) {
	var certs []*x509.Certificate
	blocks := 0
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		blocks++
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Sprintf("holds a PEM block of type %s (block %d): only CERTIFICATE blocks are CA certificates", b.Type, blocks)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Sprintf("certificate %d does not parse: %v", blocks, err)
		}
		certs = append(certs, c)
	}
	switch {
	case bytes.Count(data, []byte("-----BEGIN ")) > blocks:
		// pem.Decode skips a block it cannot decode; Envoy refuses the bundle.
		return nil, "holds a PEM block that does not decode (bad base64 or a missing END line)"
	case len(certs) == 0:
		return nil, "holds no PEM certificate"
	}
	return certs, ""
}

// clientCASecret is the Envoy Secret of the client validation cv on port of Gateway g: its CA
// certificates as trusted_ca and, for AllowInsecureFallback, trust_chain_verification
// ACCEPT_UNTRUSTED (Envoy then accepts a certificate that fails verification).
func clientCASecret(g *gwv1.Gateway, port int32, cv *clientValidation) *tlsv3.Secret {
	vc := &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: cv.bundle}},
	}
	if cv.insecure {
		vc.TrustChainVerification = tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED
	}
	return &tlsv3.Secret{Name: ClientCASecretName(g.Namespace, g.Name, port), Type: &tlsv3.Secret_ValidationContext{ValidationContext: vc}}
}

// applyClientValidation sets the client certificate validation of port on an HTTPS listener
// whose certificates resolved: the listener is refused when its validation is (no valid CA
// certificate, an unsupported mode), its ResolvedRefs is False when some CA ref is invalid, and
// lt gets the CA Secret and, for AllowValidOnly, requires a certificate. It reports whether the
// listener is still accepted.
func (t *translation) applyClientValidation(li *listenerInfo, lt *listenerTLS) bool {
	cv := t.clientValidation(li.gw, li.l.Port)
	if cv == nil {
		return true
	}
	li.refsReason, li.refsMsg = cv.refsReason, cv.refsMsg
	if cv.refusal != "" {
		li.refuse(cv.refusal, cv.refusalMsg)
		return false
	}
	lt.clientCA = clientCASecret(li.gw.gw, li.l.Port, cv)
	lt.requireClient = !cv.insecure
	return true
}

// checkFrontend, once the listeners of gi are validated, resolves each client certificate
// validation of spec.tls.frontend (the default, each perPort entry) that no HTTPS listener did,
// whatever the listeners' protocols: an invalid CA ref is refused naming its field, as on an
// HTTPS listener's port. Gateway API puts the CA refs' conditions on the HTTPS listeners; a
// validation whose problems no listener's status carries (none is HTTPS) has them said on the
// Gateway's Accepted condition (gi.note, Accepted stays True) and a warning that it applies to
// no listener, as a perPort entry whose port has no HTTPS listener has. A perPort entry without
// validation on an HTTPS port while the default validates gets a warning too: it turns
// validation off there.
func (t *translation) checkFrontend(gi *gatewayInfo) {
	g := gi.gw
	if g.Spec.TLS == nil || g.Spec.TLS.Frontend == nil {
		return
	}
	f := g.Spec.TLS.Frontend
	https, perPort := map[int32]bool{}, map[int32]bool{}
	for _, li := range gi.listeners {
		https[li.l.Port] = https[li.l.Port] || li.l.Protocol == gwv1.HTTPSProtocolType
	}
	warn := func(field, msg string) { t.st.warnings.add(KindGateway, g.Namespace, g.Name, field, msg) }
	var untold []string // the problems of validations no listener's status carries
	resolve := func(v *gwv1.FrontendTLSValidation, field string) {
		_, told := gi.clientCAs[field]
		cv := t.resolveValidation(gi, v, field, "")
		switch {
		case told:
		case cv.refusal == string(gwv1.ListenerReasonUnsupportedValue):
			untold = append(untold, cv.refusalMsg+" ("+cv.refusal+")")
		case cv.refsMsg != "":
			untold = append(untold, cv.refsMsg+" ("+cv.refsReason+")")
		}
	}
	for _, pp := range f.PerPort {
		perPort[pp.Port] = true
	}
	if v := f.Default.Validation; v != nil {
		applies, anyHTTPS := false, false
		for port, isHTTPS := range https {
			applies = applies || isHTTPS && !perPort[port]
			anyHTTPS = anyHTTPS || isHTTPS
		}
		if !applies {
			why := "the Gateway has no HTTPS listener"
			if anyHTTPS {
				why = "every HTTPS listener's port has a perPort entry"
			}
			warn("spec.tls.frontend.default.validation", why+": this configuration applies to none")
		}
		resolve(v, "spec.tls.frontend.default.validation")
	}
	for i, pp := range f.PerPort {
		field := "spec.tls.frontend.perPort[" + strconv.Itoa(i) + "]"
		switch {
		case !https[pp.Port]:
			warn(field, fmt.Sprintf("port %d has no HTTPS listener: this configuration applies to none", pp.Port))
		case pp.TLS.Validation == nil && f.Default.Validation != nil:
			// As the spec says (perPort overrides the default), but easily done unawares.
			warn(field, fmt.Sprintf("port %d: this entry has no validation, so it turns off the default's client certificate validation there: the port's HTTPS listeners accept clients without a certificate", pp.Port))
		}
		if _, _, dup := frontendField(g, pp.Port); pp.TLS.Validation != nil && (dup == "" || !https[pp.Port]) {
			resolve(pp.TLS.Validation, field+".tls.validation")
		}
	}
	if len(untold) > 0 {
		gi.note = "spec.tls.frontend: a validation that no HTTPS listener takes has CA refs that do not resolve: " + strings.Join(untold, "; ")
	}
}

// plainListenerNotes warns of each accepted HTTP listener of gi with routes attached when gi's
// spec.tls.frontend asks for client certificate validation: Gateway API applies it to HTTPS
// listeners only, so those routes are served on the HTTP port to any client, without a
// certificate. The listener's Accepted condition (still True) says it too, as tls.options'.
func (t *translation) plainListenerNotes(gi *gatewayInfo) {
	if !asksValidation(gi.gw) {
		return
	}
	g := gi.gw
	for _, li := range gi.listeners {
		if li.l.Protocol != gwv1.HTTPProtocolType || !li.ok || li.attached == 0 {
			continue
		}
		msg := fmt.Sprintf("listener %s (HTTP) serves routes without client certificates although spec.tls.frontend asks for validation", li.l.Name)
		t.st.warnings.add(KindGateway, g.Namespace, g.Name, listenerField(li), msg)
		li.note = joinNotes(li.note, msg)
	}
}

// asksValidation reports whether g's spec.tls.frontend validates client certificates anywhere
// (its default or a perPort entry has a validation).
func asksValidation(g *gwv1.Gateway) bool {
	if g.Spec.TLS == nil || g.Spec.TLS.Frontend == nil {
		return false
	}
	f := g.Spec.TLS.Frontend
	if f.Default.Validation != nil {
		return true
	}
	for _, pp := range f.PerPort {
		if pp.TLS.Validation != nil {
			return true
		}
	}
	return false
}

// joinNotes joins two notes of a condition's message, either of which may be "".
func joinNotes(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

// insecureFrontendCondition is the Gateway's InsecureFrontendValidationMode condition: True
// (reason ConfigurationChanged) while its default or a perPort validation has mode
// AllowInsecureFallback, naming them; none otherwise (Gateway API: "removed as soon as
// FrontendValidationModeType is changed back to AllowValidOnly").
func insecureFrontendCondition(g *gwv1.Gateway) []metav1.Condition {
	if g.Spec.TLS == nil || g.Spec.TLS.Frontend == nil {
		return nil
	}
	f := g.Spec.TLS.Frontend
	var fields []string
	if v := f.Default.Validation; v != nil && v.Mode == gwv1.AllowInsecureFallback {
		fields = append(fields, "spec.tls.frontend.default.validation.mode")
	}
	for i, pp := range f.PerPort {
		if v := pp.TLS.Validation; v != nil && v.Mode == gwv1.AllowInsecureFallback {
			fields = append(fields, fmt.Sprintf("spec.tls.frontend.perPort[%d].tls.validation.mode (port %d)", i, pp.Port))
		}
	}
	if len(fields) == 0 {
		return nil
	}
	msg := plural(fields, "%s is", "%s are") + " AllowInsecureFallback: the HTTPS listeners concerned accept clients without a certificate or with one that fails verification"
	return []metav1.Condition{condition(string(gwv1.GatewayConditionInsecureFrontendValidationMode), true,
		string(gwv1.GatewayReasonConfigurationChanged), msg, g.Generation)}
}
