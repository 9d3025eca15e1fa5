// HTTPRoute backendRefs: resolveBackendRef turns a rule's backendRef (a Service port or an
// AgentgatewayBackend, ReferenceGrants checked) into the target it sends to, or records why it
// is invalid (its weight then answers 500).

package translator

import (
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// backendRefOf returns the group, kind and object a backendRef of a route in namespace ns names
// (a Service of that namespace unless it says otherwise).
func backendRefOf(ns string, ref *gwv1.BackendObjectReference) (group, kind string, obj nsName) {
	return objectRefOf(ns, KindService, ref.Group, ref.Kind, ref.Namespace, ref.Name)
}

// objectRefOf returns the group, kind and object a reference of an object in namespace ns names:
// an object of the core group, of kind defaultKind and of namespace ns unless it says otherwise.
func objectRefOf(ns, defaultKind string, g *gwv1.Group, k *gwv1.Kind, n *gwv1.Namespace, name gwv1.ObjectName) (group, kind string, obj nsName) {
	kind = defaultKind
	if g != nil {
		group = string(*g)
	}
	if k != nil {
		kind = string(*k)
	}
	if n != nil && *n != "" {
		ns = string(*n)
	}
	return group, kind, key(ns, string(name))
}

// maxWeight is the largest backendRef weight Gateway API allows.
const maxWeight = 1_000_000

// resolveBackendRef adds a backendRef to the rule, or records why it is invalid; an invalid
// ref's weight answers 500.
func (t *translation) resolveBackendRef(cr *compiledRoute, c *compiledRule, rule, index int, ref *gwv1.HTTPBackendRef) {
	r := cr.r
	c.hasRefs = true
	weight := int32(1)
	if ref.Weight != nil {
		weight = *ref.Weight
	}
	failField := func(suffix, reason, msg string) {
		if cr.refReason == "" {
			cr.refReason = reason
		}
		field := "spec.rules[" + strconv.Itoa(rule) + "].backendRefs[" + strconv.Itoa(index) + "]" + suffix
		cr.refMsgs = append(cr.refMsgs, field+": "+msg)
		cr.problems.add(KindHTTPRoute, r.Namespace, r.Name, field, msg)
		if weight > 0 {
			c.invalidWeight += uint64(weight)
		}
	}
	fail := func(reason, msg string) { failField("", reason, msg) }
	// A weight out of Gateway API's range (0 to 1,000,000) refuses the ref; its share answers 500
	// as the nearest weight in range asks (a negative one none, a larger one 1,000,000), as an
	// invalid ref's does. The bound keeps a rule's weights far from Envoy's limit on their sum
	// (compileRule checks it all the same).
	switch {
	case weight < 0:
		weight = 0
		failField(".weight", string(gwv1.RouteReasonUnsupportedValue), fmt.Sprintf("%d must not be negative", *ref.Weight))
		return
	case weight > maxWeight:
		weight = maxWeight
		failField(".weight", string(gwv1.RouteReasonUnsupportedValue), fmt.Sprintf("%d is over the maximum of %d (Gateway API)", *ref.Weight, maxWeight))
		return
	}
	group, kind, obj := backendRefOf(r.Namespace, &ref.BackendObjectReference)
	ns, name := obj.Namespace, obj.Name
	if len(ref.Filters) > 0 {
		fail(string(gwv1.RouteReasonUnsupportedValue), "filters on a backendRef are not supported; put them on the rule")
		return
	}
	if ns != r.Namespace && !t.granted(r.Namespace, ns, group, kind, name) {
		fail(string(gwv1.RouteReasonRefNotPermitted), fmt.Sprintf("%s %s is in another namespace and no ReferenceGrant there permits HTTPRoutes of namespace %s to refer to it",
			kind, keyString(ns, name), r.Namespace))
		return
	}
	var tg *target
	switch {
	case group == "" && kind == KindService:
		svc := t.services[key(ns, name)]
		if svc == nil {
			fail(string(gwv1.RouteReasonBackendNotFound), fmt.Sprintf("Service %s not found", keyString(ns, name)))
			return
		}
		if ref.Port == nil {
			fail(string(gwv1.RouteReasonUnsupportedValue), "port is required for a Service backendRef")
			return
		}
		var sp *gwv1.PortNumber
		var port int
		for k := range svc.Spec.Ports {
			if svc.Spec.Ports[k].Port == *ref.Port {
				sp, port = ref.Port, k
				break
			}
		}
		if sp == nil {
			fail(string(gwv1.RouteReasonBackendNotFound), fmt.Sprintf("Service %s has no port %d", keyString(ns, name), *ref.Port))
			return
		}
		if ap := svc.Spec.Ports[port].AppProtocol; ap != nil && (*ap == AppProtocolWS || *ap == AppProtocolWSS) {
			// GEP-1911: a backend protocol the implementation does not support is refused so.
			fail(string(gwv1.RouteReasonUnsupportedProtocol), fmt.Sprintf("Service %s port %d has appProtocol %s: mcpgate does not forward WebSocket upgrades",
				keyString(ns, name), *ref.Port, *ap))
			return
		}
		tg = t.serviceRefTarget(svc, &svc.Spec.Ports[port])
		if msg := btlsRefProblem(tg); msg != "" {
			c.btlsRefused = append(c.btlsRefused, tg)
			fail(RouteReasonInvalidBackendTLSPolicy, msg)
			return
		}
	case group == backendGroup && kind == KindAgentgatewayBackend:
		bi := t.backends[key(ns, name)]
		if bi == nil {
			fail(string(gwv1.RouteReasonBackendNotFound), fmt.Sprintf("AgentgatewayBackend %s not found", keyString(ns, name)))
			return
		}
		if bi.target == nil {
			fail(string(gwv1.RouteReasonBackendNotFound), fmt.Sprintf("AgentgatewayBackend %s is not accepted: %s", keyString(ns, name), bi.err))
			return
		}
		tg = bi.target
	default:
		fail(string(gwv1.RouteReasonInvalidKind), fmt.Sprintf("kind %s/%s is not supported: use a Service or an AgentgatewayBackend (group %s)", group, kind, backendGroup))
		return
	}
	if tg.mux != nil {
		// Each weighted cluster is picked by its name, and every multiplexed backend's is the
		// mux's: two in one rule would be one cluster with two x-mcpgate-mux headers.
		if j := slices.IndexFunc(c.refs, func(r ruleRef) bool { return r.tg.mux != nil }); j >= 0 {
			fail(string(gwv1.RouteReasonUnsupportedValue), fmt.Sprintf("AgentgatewayBackend %s is multiplexed (several MCP targets behind mcpgate's mux), and so is %s before it in this rule: a rule can send to one multiplexed backend only",
				keyString(ns, name), c.refs[j].tg.backend))
			return
		}
	}
	if weight > 0 {
		c.refs = append(c.refs, ruleRef{tg: tg, weight: uint32(weight), index: index})
	}
}

// serviceRefTarget returns the target of a Service port that backendRefs name, one per port for
// all routes (they are compiled concurrently).
func (t *translation) serviceRefTarget(svc *corev1.Service, p *corev1.ServicePort) *target {
	cname := "service/" + svc.Namespace + "/" + svc.Name + "/" + strconv.Itoa(int(p.Port))
	t.svcMu.Lock()
	defer t.svcMu.Unlock()
	tg := t.svcTargets[cname]
	if tg == nil {
		tg = t.serviceTarget(cname, svc, p)
		tg.finishCluster(t.xds)
		t.svcTargets[cname] = tg
	}
	return tg
}
