package translator

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

const gatewayGroup = gwv1.GroupName

// gatewayInfo is a served Gateway during translation.
type gatewayInfo struct {
	gw  *gwv1.Gateway
	key string // "NS/NAME"
	// ref is the Gateway as policies' ancestor; their statuses share its pointed-to fields
	ref       gwv1.ParentReference
	listeners []*listenerInfo
	build     *gatewayBuild
	// refusal is why the whole Gateway is not accepted (an Accepted reason: UnsupportedAddress,
	// InvalidParameters), "" when it is; refusalField names the field and refusalMsg says why.
	// A refused Gateway serves nothing: each of its listeners is refused with it.
	refusal, refusalField, refusalMsg string
	backendCert                       *backendCert // spec.tls.backend.clientCertificateRef, nil: none (backendcert.go)
	// clientCAs are its client certificate validations, by field, resolved (frontendtls.go)
	clientCAs map[string]*clientValidation
	// note says what of an accepted Gateway is not applied as written (spec.tls.frontend's
	// problems that no listener's conditions carry), on its Accepted condition; "" = nothing
	note string
}

// listenerInfo is one listener of a served Gateway.
type listenerInfo struct {
	gw          *gatewayInfo
	l           *gwv1.Listener
	index       int
	key         string   // "NS/GATEWAY/LISTENER", the policy index key of the listener
	hostname    string   // lower-case; "" = any
	hosts       []string // {hostname}: the hostnames of a route without any (read only)
	ok          bool     // accepted: routes may attach
	kindsOK     bool     // allowedRoutes.kinds admits HTTPRoute
	reason      string   // why not ok (a listener condition reason)
	msg         string
	conflict    string // Conflicted reason, "" = none
	conflictMsg string
	badKinds    string // allowedRoutes.kinds entries that are not supported
	attached    int32
	tls         *listenerTLS // an accepted HTTPS listener's certificates (listenertls.go)
	refsReason  string       // ResolvedRefs False reason of its certificateRefs, "" = none
	refsMsg     string
	// note says what of an accepted listener is not applied as written (tls.options), on its
	// Accepted condition, as a route's Accepted condition says its warnings; "" = nothing
	note string
}

func (t *translation) translateClasses() {
	for name, c := range t.classes {
		if string(c.Spec.ControllerName) != t.opts.ControllerName {
			continue
		}
		accepted := condition(string(gwv1.GatewayClassConditionStatusAccepted), true,
			string(gwv1.GatewayClassReasonAccepted), "mcpgate serves this class", c.Generation)
		if msg := classParametersProblem(c); msg != "" {
			accepted = condition(string(gwv1.GatewayClassConditionStatusAccepted), false,
				string(gwv1.GatewayClassReasonInvalidParameters), msg, c.Generation)
			t.st.refuse(KindGatewayClass, "", name, "spec.parametersRef", msg)
		}
		t.st.GatewayClasses[name] = &gwv1.GatewayClassStatus{Conditions: []metav1.Condition{accepted}}
	}
}

// classParametersProblem says why a class of ours is not accepted for its parametersRef, or "".
// mcpgate takes no parameters of any kind, so any parametersRef refers to "an unsupported
// kind": Gateway API, "the GatewayClass SHOULD be rejected with the Accepted status condition
// set to False and an InvalidParameters reason". Its Gateways are refused with it
// (gatewayRefusal): a class that is not accepted provisions no Gateways.
func classParametersProblem(c *gwv1.GatewayClass) string {
	ref := c.Spec.ParametersRef
	if ref == nil {
		return ""
	}
	return fmt.Sprintf("parametersRef %s/%s %s: mcpgate takes no parameters (its settings are flags and the policy kinds); remove spec.parametersRef",
		ref.Group, ref.Kind, ref.Name)
}

// serves reports whether mcpgate serves Gateways of class name (see the package comment).
func (t *translation) serves(class string) bool {
	return t.opts.ServesClass(class, t.classes[class])
}

// selectGateways picks the served Gateways and validates their listeners.
func (t *translation) selectGateways() {
	var served []*gwv1.Gateway
	for _, g := range t.allGateways {
		if t.serves(string(g.Spec.GatewayClassName)) {
			served = append(served, g)
		}
	}
	slices.SortFunc(served, func(a, b *gwv1.Gateway) int { return compareAge(&a.ObjectMeta, &b.ObjectMeta) })
	portOwner := map[int32]string{}                            // ExclusivePorts: port -> gateway key
	perGateway := len(t.in.HTTPRoutes)/max(1, len(served)) + 1 // a size hint, not a limit
	for _, g := range served {
		gi := &gatewayInfo{gw: g, key: keyString(g.Namespace, g.Name), build: newGatewayBuild(perGateway)}
		gi.ref = gatewayRef(gi)
		gi.refusal, gi.refusalField, gi.refusalMsg = t.gatewayRefusal(g)
		t.gateways[key(g.Namespace, g.Name)] = gi
		t.served = append(t.served, gi)
		t.validateListeners(gi, portOwner)
		t.resolveBackendCert(gi)
	}
}

func (t *translation) validateListeners(gi *gatewayInfo, portOwner map[int32]string) {
	names := map[gwv1.SectionName]bool{}
	g := gi.gw
	for i := range g.Spec.Listeners {
		l := &g.Spec.Listeners[i]
		li := &listenerInfo{gw: gi, l: l, index: i, ok: true, kindsOK: true, key: gi.key + "/" + string(l.Name)}
		gi.listeners = append(gi.listeners, li)
		if l.Hostname != nil {
			li.hostname = strings.ToLower(string(*l.Hostname))
		}
		li.hosts = []string{li.hostname}
		t.checkRouteKinds(li)
		switch {
		case names[l.Name]:
			li.refuse(string(gwv1.ListenerReasonUnsupportedValue), fmt.Sprintf("listener name %q is used twice", l.Name))
		case !servedProtocol(l.Protocol):
			li.refuse(string(gwv1.ListenerReasonUnsupportedProtocol),
				fmt.Sprintf("protocol %s is not supported: mcpgate serves HTTP and HTTPS listeners", l.Protocol))
		case l.Protocol == gwv1.HTTPProtocolType && l.TLS != nil:
			// The API server refuses this too ("tls must not be specified for protocols ['HTTP', ...]").
			li.refuse(string(gwv1.ListenerReasonUnsupportedValue), "tls must not be set on an HTTP listener (use protocol HTTPS)")
		case l.Port < 1 || l.Port > 65535:
			li.refuse(string(gwv1.ListenerReasonUnsupportedValue), fmt.Sprintf("port %d is out of range", l.Port))
		case l.Hostname != nil && routeHostnameProblem(string(*l.Hostname)) != "":
			// As a route's hostname: Envoy would take it as a virtual host's domain as written.
			li.refuse(string(gwv1.ListenerReasonUnsupportedValue), "hostname "+routeHostnameProblem(string(*l.Hostname)))
		case l.Protocol == gwv1.HTTPSProtocolType:
			t.resolveListenerTLS(li)
			t.tlsOptionsNote(li)
		}
		names[l.Name] = true
	}
	markConflicts(gi.listeners)
	t.checkFrontend(gi)
	for _, li := range gi.listeners {
		if gi.refusal != "" {
			li.refuse(gi.refusal, "the Gateway is not accepted: "+gi.refusalMsg)
		}
		port := li.l.Port
		if t.opts.ExclusivePorts && li.ok {
			if owner, taken := portOwner[port]; taken && owner != gi.key {
				li.refuse(string(gwv1.ListenerReasonPortUnavailable),
					fmt.Sprintf("port %d is used by Gateway %s (standalone gateways share one host)", port, owner))
			} else {
				portOwner[port] = gi.key
			}
		}
		field := "spec.listeners[" + strconv.Itoa(li.index) + "]"
		if !li.ok && (gi.refusal == "" || li.reason != gi.refusal) { // the Gateway's refusal is said once
			t.st.refuse(KindGateway, g.Namespace, g.Name, field, li.msg)
		}
		if li.badKinds != "" {
			t.st.refuse(KindGateway, g.Namespace, g.Name, field+".allowedRoutes.kinds", li.badKinds)
		}
	}
}

// tlsOptionsNote reports the keys of an HTTPS listener's tls.options (Gateway API's
// implementation-specific TLS settings), none of which mcpgate implements: the listener is served
// without them, with Envoy's TLS defaults. Gateway API has no condition reason for it, so, as for
// a route's fields that are not applied (timeouts.backendRequest, retry, sessionPersistence), a
// warning names each key and the listener's Accepted condition (still True) says so. The values
// are not shown.
func (t *translation) tlsOptionsNote(li *listenerInfo) {
	if li.l.TLS == nil || len(li.l.TLS.Options) == 0 {
		return
	}
	g := li.gw.gw
	keys := make([]string, 0, len(li.l.TLS.Options))
	for k := range li.l.TLS.Options {
		keys = append(keys, strconv.Quote(string(k)))
	}
	slices.Sort(keys)
	for _, k := range keys {
		t.st.warnings.add(KindGateway, g.Namespace, g.Name, listenerField(li)+".tls.options["+k+"]", msgNotApplied+"; the listener is served without it")
	}
	li.note = plural(keys, "tls.options %s is", "tls.options %s are") +
		" not applied, mcpgate implements no TLS options: the listener is served with Envoy's TLS defaults"
}

// markConflicts sets Conflicted on the listeners of a Gateway that are not distinct. As Gateway
// API demands, no listener of a conflicting set wins: listeners of one protocol sharing a port
// and a hostname are all refused (HostnameConflict), and so are HTTP and HTTPS listeners sharing
// a port (ProtocolConflict: an Envoy listener is plaintext or TLS). A listener of another protocol
// on an HTTP or HTTPS listener's port is marked ProtocolConflict; it is refused anyway
// (UnsupportedProtocol), so the listeners served on that port stay (as Gateway API says of TCP
// listeners on implementations that do not support them).
func markConflicts(listeners []*listenerInfo) {
	type portHost struct {
		port  int32
		proto gwv1.ProtocolType
		host  string
	}
	byHost := map[portHost][]*listenerInfo{}
	protocols := map[int32]map[gwv1.ProtocolType]bool{} // served protocols by port
	for _, li := range listeners {
		if servedProtocol(li.l.Protocol) {
			if protocols[li.l.Port] == nil {
				protocols[li.l.Port] = map[gwv1.ProtocolType]bool{}
			}
			protocols[li.l.Port][li.l.Protocol] = true
			k := portHost{li.l.Port, li.l.Protocol, li.hostname}
			byHost[k] = append(byHost[k], li)
		}
	}
	for _, li := range listeners {
		onPort := protocols[li.l.Port]
		switch {
		case !servedProtocol(li.l.Protocol) && len(onPort) > 0:
			li.conflict = string(gwv1.ListenerReasonProtocolConflict)
			li.conflictMsg = fmt.Sprintf("port %d is used by %s listeners; protocol %s cannot share it", li.l.Port, protocolList(onPort), li.l.Protocol)
			li.refuse(li.conflict, li.conflictMsg)
			continue
		case len(onPort) > 1:
			li.conflict = string(gwv1.ListenerReasonProtocolConflict)
			li.conflictMsg = fmt.Sprintf("port %d has both HTTP and HTTPS listeners, which cannot share a port; none of them is served", li.l.Port)
			li.refuse(li.conflict, li.conflictMsg)
			continue
		}
		same := byHost[portHost{li.l.Port, li.l.Protocol, li.hostname}]
		if !servedProtocol(li.l.Protocol) || len(same) < 2 {
			continue
		}
		others := make([]string, 0, len(same)-1)
		for _, o := range same {
			if o != li {
				others = append(others, string(o.l.Name))
			}
		}
		li.conflict = string(gwv1.ListenerReasonHostnameConflict)
		li.conflictMsg = fmt.Sprintf("%s the same port %d and hostname %q as this one; none of them is served",
			plural(others, "listener %s has", "listeners %s have"), li.l.Port, hostnameOrAny(li.hostname))
		li.refuse(li.conflict, li.conflictMsg)
	}
}

// servedProtocol reports whether mcpgate serves listeners of protocol p.
func servedProtocol(p gwv1.ProtocolType) bool {
	return p == gwv1.HTTPProtocolType || p == gwv1.HTTPSProtocolType
}

// protocolList names the protocols of a port ("HTTP", "HTTPS" or "HTTP and HTTPS").
func protocolList(ps map[gwv1.ProtocolType]bool) string {
	switch {
	case ps[gwv1.HTTPProtocolType] && ps[gwv1.HTTPSProtocolType]:
		return "HTTP and HTTPS"
	case ps[gwv1.HTTPSProtocolType]:
		return "HTTPS"
	}
	return "HTTP"
}

// plural formats names into one (len 1) or many, which take "%s" for the joined names.
func plural(names []string, one, many string) string {
	if len(names) == 1 {
		return fmt.Sprintf(one, names[0])
	}
	return fmt.Sprintf(many, strings.Join(names, ", "))
}

func hostnameOrAny(h string) string {
	if h == "" {
		return "*"
	}
	return h
}

func (li *listenerInfo) refuse(reason, msg string) {
	if !li.ok {
		return
	}
	li.ok, li.reason, li.msg = false, reason, msg
}

// checkRouteKinds reads allowedRoutes.kinds: HTTPRoute is the only kind served.
func (t *translation) checkRouteKinds(li *listenerInfo) {
	ar := li.l.AllowedRoutes
	if ar == nil || len(ar.Kinds) == 0 {
		return
	}
	li.kindsOK = false
	var bad []string
	for _, k := range ar.Kinds {
		group := gatewayGroup
		if k.Group != nil {
			group = string(*k.Group)
		}
		if group == gatewayGroup && k.Kind == KindHTTPRoute {
			li.kindsOK = true
			continue
		}
		bad = append(bad, group+"/"+string(k.Kind))
	}
	if len(bad) > 0 {
		li.badKinds = "route kinds not supported (only HTTPRoute): " + strings.Join(bad, ", ")
	}
}

// admits reports whether the listener lets an HTTPRoute of namespace ns attach: its protocol
// carries HTTPRoutes (HTTP, HTTPS) and its allowedRoutes (kinds, namespaces) select the route.
// Whether the listener is accepted does not matter: Gateway API, ListenerStatus.AttachedRoutes,
// "Successful attachment of a Route to a Listener is based solely on the combination of the
// AllowedRoutes field on the corresponding Listener and the Route's ParentRefs field ... Listener
// or Route status does not impact successful attachment". A listener that is not accepted counts
// the route, but serves nothing (attachParent).
func (t *translation) admits(li *listenerInfo, ns string) bool {
	if !li.kindsOK || (li.l.Protocol != gwv1.HTTPProtocolType && li.l.Protocol != gwv1.HTTPSProtocolType) {
		return false
	}
	from := gwv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	if ar := li.l.AllowedRoutes; ar != nil && ar.Namespaces != nil {
		if ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
		}
		sel = ar.Namespaces.Selector
	}
	switch from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSame:
		return ns == li.gw.gw.Namespace
	case gwv1.NamespacesFromSelector:
		if sel == nil {
			return false
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return false
		}
		return s.Matches(labels.Set(t.namespaceLabels(ns)))
	}
	return false
}

// namespaceLabels returns a namespace's labels, with the kubernetes.io/metadata.name label the
// API server sets on every namespace (so selectors work without Namespace objects in files).
func (t *translation) namespaceLabels(ns string) map[string]string {
	out := map[string]string{"kubernetes.io/metadata.name": ns}
	if n := t.namespaces[ns]; n != nil {
		for k, v := range n.Labels {
			out[k] = v
		}
	}
	return out
}

// finishGateways writes each served Gateway's status and xDS.
func (t *translation) finishGateways() {
	for _, gi := range t.served {
		t.st.Gateways[key(gi.gw.Namespace, gi.gw.Name)] = t.gatewayStatus(gi)
		t.out.Gateways[gi.key] = t.buildGateway(gi)
	}
}

func (t *translation) gatewayStatus(gi *gatewayInfo) *gwv1.GatewayStatus {
	gen := gi.gw.Generation
	st := &gwv1.GatewayStatus{}
	t.plainListenerNotes(gi)
	valid := 0
	for _, li := range gi.listeners {
		ls := gwv1.ListenerStatus{Name: li.l.Name, AttachedRoutes: li.attached, SupportedKinds: []gwv1.RouteGroupKind{}}
		if servedProtocol(li.l.Protocol) && li.kindsOK {
			group := gwv1.Group(gatewayGroup)
			ls.SupportedKinds = []gwv1.RouteGroupKind{{Group: &group, Kind: KindHTTPRoute}}
		}
		if li.ok {
			valid++
			ls.Conditions = append(ls.Conditions,
				condition(string(gwv1.ListenerConditionAccepted), true, string(gwv1.ListenerReasonAccepted), li.note, gen),
				condition(string(gwv1.ListenerConditionProgrammed), true, string(gwv1.ListenerReasonProgrammed), "", gen))
		} else {
			ls.Conditions = append(ls.Conditions,
				condition(string(gwv1.ListenerConditionAccepted), false, li.reason, li.msg, gen),
				condition(string(gwv1.ListenerConditionProgrammed), false, string(gwv1.ListenerReasonInvalid), li.msg, gen))
		}
		if li.refsReason != "" { // its certificateRefs (listenertls.go)
			ls.Conditions = append(ls.Conditions, condition(string(gwv1.ListenerConditionResolvedRefs), false,
				li.refsReason, li.refsMsg, gen))
		} else if li.badKinds != "" {
			ls.Conditions = append(ls.Conditions, condition(string(gwv1.ListenerConditionResolvedRefs), false,
				string(gwv1.ListenerReasonInvalidRouteKinds), li.badKinds, gen))
		} else {
			ls.Conditions = append(ls.Conditions, condition(string(gwv1.ListenerConditionResolvedRefs), true,
				string(gwv1.ListenerReasonResolvedRefs), "", gen))
		}
		if li.conflict != "" {
			ls.Conditions = append(ls.Conditions, condition(string(gwv1.ListenerConditionConflicted), true, li.conflict, li.conflictMsg, gen))
		} else {
			ls.Conditions = append(ls.Conditions, condition(string(gwv1.ListenerConditionConflicted), false,
				string(gwv1.ListenerReasonNoConflicts), "", gen))
		}
		st.Listeners = append(st.Listeners, ls)
	}
	var bad, good []string
	for _, li := range gi.listeners {
		if li.ok {
			good = append(good, string(li.l.Name))
		} else {
			bad = append(bad, fmt.Sprintf("%s (%s)", li.l.Name, li.reason))
		}
	}
	switch {
	case gi.refusal != "":
		st.Conditions = append(st.Conditions,
			condition(string(gwv1.GatewayConditionAccepted), false, gi.refusal, gi.refusalMsg, gen),
			condition(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonInvalid), gi.refusalMsg, gen))
		t.st.refuse(KindGateway, gi.gw.Namespace, gi.gw.Name, gi.refusalField, gi.refusalMsg)
	case valid == len(gi.listeners) && valid > 0:
		st.Conditions = append(st.Conditions,
			condition(string(gwv1.GatewayConditionAccepted), true, string(gwv1.GatewayReasonAccepted), gi.note, gen),
			condition(string(gwv1.GatewayConditionProgrammed), true, string(gwv1.GatewayReasonProgrammed), "", gen))
	case valid > 0:
		msg := fmt.Sprintf("%d of %d listeners are not accepted: %s; accepted: %s (see the listener conditions)",
			len(bad), len(gi.listeners), strings.Join(bad, ", "), strings.Join(good, ", "))
		st.Conditions = append(st.Conditions,
			condition(string(gwv1.GatewayConditionAccepted), true, string(gwv1.GatewayReasonListenersNotValid), joinNotes(msg, gi.note), gen),
			condition(string(gwv1.GatewayConditionProgrammed), true, string(gwv1.GatewayReasonProgrammed), "", gen))
	default:
		msg := "no listener is valid: " + strings.Join(bad, ", ") + " (see the listener conditions)"
		if len(gi.listeners) == 0 {
			msg = "the Gateway has no listeners"
		}
		st.Conditions = append(st.Conditions,
			condition(string(gwv1.GatewayConditionAccepted), false, string(gwv1.GatewayReasonListenersNotValid), msg, gen),
			condition(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonInvalid), msg, gen))
		t.st.refuse(KindGateway, gi.gw.Namespace, gi.gw.Name, "spec.listeners", msg)
	}
	if c, ok := backendRefsCondition(gi); ok {
		st.Conditions = append(st.Conditions, c)
	}
	st.Conditions = append(st.Conditions, insecureFrontendCondition(gi.gw)...)
	if a := t.opts.BindAddress; a != "0.0.0.0" && a != "::" {
		typ := gwv1.IPAddressType
		st.Addresses = []gwv1.GatewayStatusAddress{{Type: &typ, Value: a}}
	}
	if reason, msg := t.unusableAddresses(gi.gw); msg != "" && gi.refusal == "" {
		// Gateway API: a requested address that is not used MUST show in the status. The
		// Gateway is served all the same, on the addresses it has.
		for i := range st.Conditions {
			if c := &st.Conditions[i]; c.Type == string(gwv1.GatewayConditionProgrammed) && c.Status == metav1.ConditionTrue {
				c.Status, c.Reason, c.Message = metav1.ConditionFalse, reason, msg
			}
		}
		t.st.warnings.add(KindGateway, gi.gw.Namespace, gi.gw.Name, "spec.addresses", msg)
	}
	return st
}

// gatewayRefusal says why a served Gateway is not accepted as a whole: its Accepted reason, the
// field and the message; "" reason when it is accepted. Gateway API: a Gateway whose
// infrastructure.parametersRef "refers to an unsupported kind" (mcpgate takes none) SHOULD be
// Accepted False InvalidParameters, and so is one whose class is not accepted for its
// parametersRef (classParametersProblem); an address "of a type which is not supported by the
// implementation" is Accepted False UnsupportedAddress (mcpgate takes IPAddress and Hostname,
// which a Service or the bind address can have).
func (t *translation) gatewayRefusal(gw *gwv1.Gateway) (reason, field, msg string) {
	if c := t.classes[string(gw.Spec.GatewayClassName)]; c != nil && string(c.Spec.ControllerName) == t.opts.ControllerName {
		if p := classParametersProblem(c); p != "" {
			return string(gwv1.GatewayReasonInvalidParameters), "spec.gatewayClassName", fmt.Sprintf("GatewayClass %s is not accepted: %s", c.Name, p)
		}
	}
	if inf := gw.Spec.Infrastructure; inf != nil && inf.ParametersRef != nil {
		ref := inf.ParametersRef
		return string(gwv1.GatewayReasonInvalidParameters), "spec.infrastructure.parametersRef",
			fmt.Sprintf("parametersRef %s/%s %s: mcpgate takes no parameters; remove spec.infrastructure.parametersRef", ref.Group, ref.Kind, ref.Name)
	}
	for i, a := range gw.Spec.Addresses {
		if typ := addressType(a); typ != gwv1.IPAddressType && typ != gwv1.HostnameAddressType {
			return string(gwv1.GatewayReasonUnsupportedAddress), fmt.Sprintf("spec.addresses[%d].type", i),
				fmt.Sprintf("address type %s is not supported: mcpgate takes %s and %s addresses", typ, gwv1.IPAddressType, gwv1.HostnameAddressType)
		}
	}
	return "", "", ""
}

// addressType is the type of a requested address (IPAddress when unset, the API server's default).
func addressType(a gwv1.GatewaySpecAddress) gwv1.AddressType {
	if a.Type == nil {
		return gwv1.IPAddressType
	}
	return *a.Type
}

// unusableAddresses says which of gw's requested addresses (spec.addresses) it is not served on,
// with the Programmed reason to give, or "" when it is served on all of them. mcpgate assigns
// none: in Kubernetes the Gateway's addresses are its Service's (Envoy Gateway's external IPs are
// not set: a Service's externalIPs capture the cluster's traffic to that IP, CVE-2020-8554);
// standalone, Envoy's listeners bind Options.BindAddress, the one address a request may name. An
// address without a value asks mcpgate to assign one, which it does not: Gateway API, "If an
// implementation does not support an empty value, they MUST set the Programmed condition in
// status to False with a reason of AddressNotAssigned" (the Kubernetes provider, which finds the
// other addresses on the Service, keeps that one False); else AddressNotUsable.
func (t *translation) unusableAddresses(gw *gwv1.Gateway) (reason, msg string) {
	bind, err := netip.ParseAddr(t.opts.BindAddress)
	wildcard := err != nil || bind.IsUnspecified()
	var bad, empty []string
	for i, a := range gw.Spec.Addresses {
		typ := addressType(a)
		if a.Value == "" {
			empty = append(empty, fmt.Sprintf("spec.addresses[%d] (%s)", i, typ))
			continue
		}
		if ip, err := netip.ParseAddr(a.Value); typ == gwv1.IPAddressType && err == nil && !wildcard && ip == bind {
			continue
		}
		bad = append(bad, fmt.Sprintf("%s %s", typ, a.Value))
	}
	servedOn := "its Service's addresses (standalone: every address of the host)"
	if !wildcard {
		servedOn = "its bind address, " + t.opts.BindAddress
	}
	if len(empty) == 0 && len(bad) == 0 {
		return "", ""
	}
	var what []string
	reason = string(gwv1.GatewayReasonAddressNotUsable)
	if len(empty) > 0 {
		reason = string(gwv1.GatewayReasonAddressNotAssigned)
		what = append(what, plural(empty, "%s asks for an address without a value", "%s ask for addresses without a value"))
	}
	if len(bad) > 0 {
		what = append(what, fmt.Sprintf("requested addresses are not assigned (%s)", strings.Join(bad, ", ")))
	}
	return reason, fmt.Sprintf("%s: mcpgate serves the Gateway on %s; remove spec.addresses", strings.Join(what, "; "), servedOn)
}

// listenerName is the Envoy listener and RouteConfiguration name of a Gateway port.
func listenerName(gi *gatewayInfo, port int32) string {
	return gi.key + "/" + strconv.Itoa(int(port))
}
