// BackendTLSPolicy (Gateway API v1, standard channel): how the Gateway reaches a Service port
// over TLS. resolveBackendTLS (before the backends) validates every policy, resolves its CA
// certificates and decides which policy applies to which Service port; serviceCluster gives the
// EDS cluster of a port the policy's upstream TLS socket (upstreamtls.go), and
// backendTLSStatuses (after the routes) writes each policy's status per ancestor: the Gateways
// whose routes reach the ports it applies to (docs/design.md, BackendTLSPolicy).

package translator

import (
	"bytes"
	"cmp"
	"crypto/x509"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// KindBackendTLSPolicy is the kind of Gateway API's BackendTLSPolicy.
const KindBackendTLSPolicy = "BackendTLSPolicy"

// RouteReasonInvalidBackendTLSPolicy is the reason of an HTTPRoute's ResolvedRefs False when a
// backendRef names a Service port whose BackendTLSPolicy is not accepted: Gateway API counts
// such a backendRef invalid ("a BackendTLSPolicy is present that refers to the Service, and the
// implementation is unable to meet the requirement") without naming a reason; its share of the
// traffic answers 500, never plaintext.
const RouteReasonInvalidBackendTLSPolicy = "InvalidBackendTLSPolicy"

// btlsPolicy is a BackendTLSPolicy during translation.
type btlsPolicy struct {
	p *gwv1.BackendTLSPolicy
	// tls is the upstream TLS of the ports it applies to (h2 set per port); nil when the policy
	// is not accepted: those ports then connect nowhere and their backendRefs answer 500
	tls *upstreamTLS
	// invalidReason and invalidMsg are its Accepted False (Invalid, NoValidCACertificate)
	invalidReason, invalidMsg string
	// refsReason and refsMsg are its ResolvedRefs False (InvalidCACertificateRef, InvalidKind)
	refsReason, refsMsg string
	note                string // said in Accepted True (options not applied)
	targets             []btlsTarget
}

// btlsTarget is one of a policy's targetRefs, resolved.
type btlsTarget struct {
	index int
	svc   *corev1.Service // nil when msg says why it is not found
	ports []int32         // the ports it selects: the one sectionName names, or all
	msg   string          // why the target is not found
	// winner is the older policy that targets the same Service and sectionName (Conflicted)
	winner *btlsPolicy
}

// btlsPort names a Service port a policy may apply to.
type btlsPort struct {
	ns, name string
	port     int32
}

// btlsClaim is what a targetRef claims: a Service and a sectionName ("" for the whole Service).
type btlsClaim struct {
	ns, name, section string
}

// resolveBackendTLS validates the BackendTLSPolicies, oldest first (Gateway API's precedence:
// creationTimestamp, then namespace/name), and fills t.btlsByPort: the policy that applies to
// each targeted Service port, the one whose targetRef names the port by sectionName, else the
// one naming the whole Service. Of two naming the same Service and sectionName, the older
// applies and the other is Conflicted there.
func (t *translation) resolveBackendTLS() {
	list := make([]*btlsPolicy, 0, len(t.in.BackendTLSPolicies))
	for _, p := range t.in.BackendTLSPolicies {
		if p != nil && p.Name != "" {
			list = append(list, &btlsPolicy{p: p})
		}
	}
	slices.SortFunc(list, func(a, b *btlsPolicy) int {
		if c := a.p.CreationTimestamp.Compare(b.p.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Or(strings.Compare(a.p.Namespace, b.p.Namespace), strings.Compare(a.p.Name, b.p.Name))
	})
	t.btlsList = list
	claims := map[btlsClaim]*btlsPolicy{}
	for _, bp := range list {
		t.validateBackendTLS(bp)
		for i, ref := range bp.p.Spec.TargetRefs {
			bt := t.btlsTargetOf(bp.p.Namespace, i, ref)
			if bt.msg != "" {
				// said here too: a policy no served Gateway reaches has no status from mcpgate
				t.st.refuse(KindBackendTLSPolicy, bp.p.Namespace, bp.p.Name, "spec.targetRefs["+strconv.Itoa(i)+"]", bt.msg)
			}
			if bt.svc != nil {
				c := btlsClaim{bp.p.Namespace, bt.svc.Name, string(ptrOr(ref.SectionName))}
				if w := claims[c]; w != nil && w != bp {
					bt.winner = w
					t.st.warnings.add(KindBackendTLSPolicy, bp.p.Namespace, bp.p.Name, "spec.targetRefs["+strconv.Itoa(i)+"]",
						fmt.Sprintf("not applied: BackendTLSPolicy %s targets %s too and takes precedence (the oldest by creationTimestamp, then namespace/name)",
							keyString(w.p.Namespace, w.p.Name), bt.describe(ref.SectionName)))
				} else {
					claims[c] = bp
				}
			}
			bp.targets = append(bp.targets, bt)
		}
	}
	for c, bp := range claims {
		svc := t.services[key(c.ns, c.name)]
		for _, sp := range svc.Spec.Ports {
			if c.section != "" && sp.Name != c.section {
				continue
			}
			pk := btlsPort{c.ns, c.name, sp.Port}
			if c.section == "" && claims[btlsClaim{c.ns, c.name, sp.Name}] != nil && sp.Name != "" {
				continue // a policy naming the port is more specific
			}
			t.btlsByPort[pk] = bp
		}
		if c.section == "" && svc.Spec.Type == corev1.ServiceTypeExternalName {
			t.btlsByPort[btlsPort{c.ns, c.name, anyPort}] = bp
		}
	}
}

// anyPort is the port of a btlsPort that stands for every port of an ExternalName Service that
// its policy targets whole (without sectionName): a DNS alias reaches any port of its
// externalName, declared in the Service or not.
const anyPort = 0

// btlsOf returns the BackendTLSPolicy that applies to port of svc, and the key it applies under:
// the port's, or for an ExternalName Service targeted whole, anyPort's.
func (t *translation) btlsOf(svc *corev1.Service, port int32) (*btlsPolicy, btlsPort) {
	pk := btlsPort{svc.Namespace, svc.Name, port}
	if bp := t.btlsByPort[pk]; bp != nil || svc.Spec.Type != corev1.ServiceTypeExternalName {
		return bp, pk
	}
	pk.port = anyPort
	return t.btlsByPort[pk], pk
}

// ptrOr is *p, or the zero value when p is nil.
func ptrOr[T any](p *T) T {
	var v T
	if p != nil {
		v = *p
	}
	return v
}

// describe names the Service and section of a target for messages.
func (bt *btlsTarget) describe(section *gwv1.SectionName) string {
	s := "Service " + keyString(bt.svc.Namespace, bt.svc.Name)
	if section != nil && *section != "" {
		s += " port " + string(*section)
	}
	return s
}

// btlsTargetOf resolves targetRefs[i] of a policy in namespace ns: a core Service of ns, and
// with a sectionName its port of that name.
func (t *translation) btlsTargetOf(ns string, i int, ref gwv1.LocalPolicyTargetReferenceWithSectionName) btlsTarget {
	bt := btlsTarget{index: i}
	if ref.Group != "" || ref.Kind != KindService {
		bt.msg = fmt.Sprintf("%s %s: only core Services (group \"\", kind Service) are supported", groupKind(string(ref.Group), string(ref.Kind)), ref.Name)
		return bt
	}
	svc := t.services[key(ns, string(ref.Name))]
	if svc == nil {
		bt.msg = fmt.Sprintf("Service %s not found", keyString(ns, string(ref.Name)))
		return bt
	}
	for _, sp := range svc.Spec.Ports {
		if ref.SectionName == nil || *ref.SectionName == "" || sp.Name == string(*ref.SectionName) {
			bt.ports = append(bt.ports, sp.Port)
		}
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName && (ref.SectionName == nil || *ref.SectionName == "") {
		bt.ports = append(bt.ports, anyPort) // its undeclared ports too (anyPort)
	}
	switch {
	case len(bt.ports) > 0:
	case ref.SectionName == nil || *ref.SectionName == "":
		bt.msg = fmt.Sprintf("Service %s has no ports", keyString(ns, svc.Name))
		return bt
	default:
		bt.msg = fmt.Sprintf("Service %s has no port named %s (sectionName names a port by its name)", keyString(ns, svc.Name), *ref.SectionName)
		return bt
	}
	bt.svc = svc
	return bt
}

// validateBackendTLS checks a policy's spec.validation and resolves its CA certificates into
// bp.tls, or sets why the policy is not accepted. The CRD refuses some of this in Kubernetes
// (hostname, both or neither of caCertificateRefs and wellKnownCACertificates, subjectAltNames
// shapes); files meet no CRD.
func (t *translation) validateBackendTLS(bp *btlsPolicy) {
	p := bp.p
	v := &p.Spec.Validation
	invalid := func(reason, field, msg string) {
		bp.invalidReason, bp.invalidMsg = reason, field+": "+msg
		t.st.refuse(KindBackendTLSPolicy, p.Namespace, p.Name, field, msg)
	}
	reasonInvalid := string(gwv1.PolicyReasonInvalid)
	if len(p.Spec.TargetRefs) == 0 {
		invalid(reasonInvalid, "spec.targetRefs", "at least one targetRef is required")
		return
	}
	host := string(v.Hostname)
	switch {
	case host == "":
		invalid(reasonInvalid, "spec.validation.hostname", "a hostname is required: it is the SNI and the name the certificate is verified for")
		return
	case isIP(host) || strings.Contains(host, "*") || !validDNSName(host):
		invalid(reasonInvalid, "spec.validation.hostname", fmt.Sprintf("%q is not a DNS name without wildcard (a PreciseHostname)", host))
		return
	}
	u := &upstreamTLS{sni: strings.TrimSuffix(host, "."), verify: true}
	for i, san := range v.SubjectAltNames {
		f := "spec.validation.subjectAltNames[" + strconv.Itoa(i) + "]"
		switch san.Type {
		case gwv1.HostnameSubjectAltNameType:
			h := string(san.Hostname)
			if h == "" || san.URI != "" || !validDNSName(strings.TrimPrefix(h, "*.")) {
				invalid(reasonInvalid, f, fmt.Sprintf("type Hostname takes a DNS name in hostname and no uri (hostname %q)", h))
				return
			}
			u.sans = append(u.sans, h)
		case gwv1.URISubjectAltNameType:
			s := string(san.URI)
			if pu, err := url.Parse(s); s == "" || san.Hostname != "" || err != nil || pu.Scheme == "" || pu.Opaque == "" && pu.Host == "" && pu.Path == "" {
				invalid(reasonInvalid, f, fmt.Sprintf("type URI takes an absolute URI (scheme and scheme-specific part) in uri and no hostname (uri %q)", s))
				return
			}
			u.uris = append(u.uris, s)
		case "":
			invalid(reasonInvalid, f+".type", "type is required")
			return
		default:
			invalid(reasonInvalid, f+".type", unsupported(san.Type, gwv1.HostnameSubjectAltNameType, gwv1.URISubjectAltNameType))
			return
		}
	}
	if len(v.SubjectAltNames) == 0 {
		u.sans = []string{u.sni} // Gateway API: the hostname is verified unless subjectAltNames are given
	}
	wk := ptrOr(v.WellKnownCACertificates)
	switch {
	case len(v.CACertificateRefs) > 0 && wk != "":
		invalid(reasonInvalid, "spec.validation", "caCertificateRefs and wellKnownCACertificates may not be set together")
		return
	case len(v.CACertificateRefs) == 0 && wk == "":
		invalid(reasonInvalid, "spec.validation", "set caCertificateRefs (ConfigMaps holding the CA certificates in key "+caCertKey+") or wellKnownCACertificates System")
		return
	case wk != "" && wk != gwv1.WellKnownCACertificatesSystem:
		invalid(reasonInvalid, "spec.validation.wellKnownCACertificates", fmt.Sprintf("%q is not supported: mcpgate knows System (the bundle of --upstream-ca-file)", wk))
		return
	}
	if len(v.CACertificateRefs) > 0 {
		if u.ca = t.backendTLSCAs(bp); u.ca == "" {
			bp.invalidReason = string(gwv1.BackendTLSPolicyReasonNoValidCACertificate)
			bp.invalidMsg = "no valid CA certificate in spec.validation.caCertificateRefs (see ResolvedRefs): the backend cannot be verified, so its connections fail"
			return
		}
	}
	if len(p.Spec.Options) > 0 {
		keys := make([]string, 0, len(p.Spec.Options))
		for k := range p.Spec.Options {
			keys = append(keys, string(k))
		}
		slices.Sort(keys)
		bp.note = "spec.options " + strings.Join(keys, ", ") + " not applied: mcpgate supports no option"
		t.st.warnings.add(KindBackendTLSPolicy, p.Namespace, p.Name, "spec.options", bp.note)
	}
	bp.tls = u
}

// backendTLSCAs reads the CA certificates of a policy's caCertificateRefs, as one PEM bundle
// ("" when no ref is valid), and sets its ResolvedRefs False for each invalid ref: a kind other
// than core ConfigMap (InvalidKind), a ConfigMap not found, without ca.crt or whose ca.crt Envoy
// would not load (InvalidCACertificateRef; caConfigMap, as a Gateway's client CAs).
func (t *translation) backendTLSCAs(bp *btlsPolicy) string {
	p := bp.p
	var problems []string
	var out bytes.Buffer
	seen := map[string]bool{}
	for i, ref := range p.Spec.Validation.CACertificateRefs {
		f := "spec.validation.caCertificateRefs[" + strconv.Itoa(i) + "]"
		reason := string(gwv1.BackendTLSPolicyReasonInvalidCACertificateRef)
		var msg string
		var certs []*x509.Certificate
		if ref.Group != "" || ref.Kind != kindConfigMap {
			reason = string(gwv1.BackendTLSPolicyReasonInvalidKind)
			msg = fmt.Sprintf("%s %s: only core ConfigMaps (group \"\", kind ConfigMap) holding the CA certificates in key %s are supported",
				groupKind(string(ref.Group), string(ref.Kind)), keyString(p.Namespace, string(ref.Name)), caCertKey)
		} else {
			certs, msg = t.caConfigMap(ObjectKey{Kind: KindBackendTLSPolicy, Namespace: p.Namespace, Name: p.Name}, f, p.Namespace, string(ref.Name))
		}
		if msg != "" {
			problems = append(problems, f+": "+msg)
			if bp.refsReason == "" || reason == string(gwv1.BackendTLSPolicyReasonInvalidKind) {
				bp.refsReason = reason
			}
			t.st.refuse(KindBackendTLSPolicy, p.Namespace, p.Name, f, msg)
			continue
		}
		appendPEM(&out, seen, certs)
	}
	bp.refsMsg = strings.Join(problems, "; ")
	return out.String()
}

// applyBackendTLS gives tg, the target of Service port p of svc, the BackendTLSPolicy that
// applies to the port, if any: its upstream TLS (ALPN h2 for appProtocol kubernetes.io/h2c), or,
// when the policy is not accepted, no endpoints, so that the cluster connects nowhere (Envoy
// answers 503, no healthy upstream) rather than in plaintext. The Host header is the client's,
// as for any Service backend (unlike a static target's, withTLS).
func (t *translation) applyBackendTLS(tg *target, svc *corev1.Service, p *corev1.ServicePort) {
	bp, pk := t.btlsOf(svc, p.Port)
	if bp == nil {
		return
	}
	tg.btls, tg.btlsPort = bp, &pk
	if bp.tls == nil {
		tg.cla = buildLoadAssignment(tg.cla.ClusterName, nil)
		return
	}
	u := *bp.tls
	u.h2 = isH2C(p)
	tg.cluster.TransportSocket = t.xds.tlsSocket(&u)
}

// btlsRefProblem says why a backendRef to tg must answer 500 for its BackendTLSPolicy (one not
// accepted applies to the port), "" when it need not.
func btlsRefProblem(tg *target) string {
	if tg.btls == nil || tg.btls.tls != nil {
		return ""
	}
	p := tg.btls.p
	return fmt.Sprintf("BackendTLSPolicy %s applies to the port and is not accepted (%s, see its status): its share answers 500, never plaintext",
		keyString(p.Namespace, p.Name), tg.btls.invalidReason)
}

// notePortGateway records that Gateway gi's routes reach tg (and a multiplexed or bridged
// target's targets): the ancestors of the BackendTLSPolicies of the Service ports among them.
func (t *translation) notePortGateway(tg *target, gi *gatewayInfo) {
	if len(t.btlsList) == 0 {
		return
	}
	var seen []*target // a bridge's mux names the target that names the bridge
	var walk func(tg *target)
	walk = func(tg *target) {
		if tg == nil || slices.Contains(seen, tg) {
			return
		}
		seen = append(seen, tg)
		if tg.btlsPort != nil {
			l := t.btlsGateways[*tg.btlsPort]
			if l == nil {
				l = &gatewayList{}
				t.btlsGateways[*tg.btlsPort] = l
			}
			l.add(gi)
		}
		if tg.mux != nil {
			for _, m := range tg.mux.targets {
				walk(m)
			}
		}
		walk(tg.bridge)
	}
	walk(tg)
}

// backendTLSStatuses writes the BackendTLSPolicies' status: one ancestor per served Gateway
// whose routes reach a port the policy targets, each with Accepted (True; False Invalid,
// NoValidCACertificate, TargetNotFound or Conflicted) and ResolvedRefs (True; False
// InvalidCACertificateRef or InvalidKind). A policy no served Gateway reaches gets no status
// from mcpgate (Gateway API: implementations "MUST ONLY populate ancestor status for the
// Ancestor resources they are responsible for"; another implementation's Gateway may be the
// one that reaches it): its problems are in Status's problems and warnings, and the Kubernetes
// provider removes an ancestor it wrote before, keeping other controllers'.
func (t *translation) backendTLSStatuses() {
	ctrl := gwv1.GatewayController(t.opts.ControllerName)
	for _, bp := range t.btlsList {
		p := bp.p
		gen := p.Generation
		refs := condition(string(gwv1.BackendTLSPolicyConditionResolvedRefs), true, string(gwv1.BackendTLSPolicyReasonResolvedRefs), "", gen)
		if bp.refsReason != "" {
			refs = condition(string(gwv1.BackendTLSPolicyConditionResolvedRefs), false, bp.refsReason, bp.refsMsg, gen)
		}
		st := &gwv1.PolicyStatus{}
		add := func(ref gwv1.ParentReference, c metav1.Condition) {
			if len(st.Ancestors) == maxAncestors || slices.ContainsFunc(st.Ancestors, func(a gwv1.PolicyAncestorStatus) bool { return sameRef(&a.AncestorRef, &ref) }) {
				return
			}
			st.Ancestors = append(st.Ancestors, gwv1.PolicyAncestorStatus{AncestorRef: ref, ControllerName: ctrl, Conditions: []metav1.Condition{c, refs}})
		}
		for _, bt := range bp.targets {
			ref := p.Spec.TargetRefs[bt.index]
			field := "spec.targetRefs[" + strconv.Itoa(bt.index) + "]"
			var c metav1.Condition
			switch {
			case bt.msg != "":
				c = condition(string(gwv1.PolicyConditionAccepted), false, string(gwv1.PolicyReasonTargetNotFound), field+": "+bt.msg, gen)
			case bt.winner != nil:
				c = condition(string(gwv1.PolicyConditionAccepted), false, string(gwv1.PolicyReasonConflicted),
					fmt.Sprintf("%s: BackendTLSPolicy %s targets %s too and takes precedence (the oldest by creationTimestamp, then namespace/name)",
						field, keyString(bt.winner.p.Namespace, bt.winner.p.Name), bt.describe(ref.SectionName)), gen)
			case bp.invalidReason != "":
				c = condition(string(gwv1.PolicyConditionAccepted), false, bp.invalidReason, bp.invalidMsg, gen)
			default:
				c = condition(string(gwv1.PolicyConditionAccepted), true, string(gwv1.PolicyReasonAccepted), bp.note, gen)
			}
			var gws []*gatewayInfo
			if bt.svc != nil {
				for _, port := range bt.ports {
					if l := t.btlsGateways[btlsPort{p.Namespace, bt.svc.Name, port}]; l != nil {
						for _, gi := range l.list {
							if !slices.Contains(gws, gi) {
								gws = append(gws, gi)
							}
						}
					}
				}
			}
			slices.SortFunc(gws, func(a, b *gatewayInfo) int {
				return cmp.Or(strings.Compare(a.gw.Namespace, b.gw.Namespace), strings.Compare(a.gw.Name, b.gw.Name))
			})
			for _, gi := range gws {
				add(gi.ref, c)
			}
		}
		if len(st.Ancestors) > 0 {
			t.st.Policies[ObjectKey{Kind: KindBackendTLSPolicy, Namespace: p.Namespace, Name: p.Name}] = st
		}
	}
}
