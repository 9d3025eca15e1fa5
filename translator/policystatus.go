// The status of AgentgatewayPolicies (policyStatuses, once the routes are attached): each
// policy's ancestors (the Gateways it takes effect on), its Accepted and Conflicted conditions
// per ancestor, and which targets are only other controllers' business (foreignTarget,
// foreignBackends, which affected.go reads too).

package translator

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
)

// maxAncestors is the most ancestors a PolicyStatus holds (Gateway API).
const maxAncestors = 16

// policyStatuses writes the status of every policy once the routes are translated. Its
// ancestors are the Gateways it takes effect on, as Gateway API recommends: a targeted Gateway
// (with the listener's sectionName), the served Gateways a targeted HTTPRoute is attached to,
// the Gateways whose routes use a targeted AgentgatewayBackend. A target that is not found, or
// that takes effect on no Gateway yet, is its own ancestor. A target that is only other
// controllers' business (foreignTarget) has no ancestor: Gateway API has a controller write
// ancestor status only for the ancestors it is responsible for. Each policy's status is made
// on its own (forEach); the JWT authentications it loses are warnings too, added in policy
// order. foreign is foreignBackends.
func (t *translation) policyStatuses(foreign map[nsName]bool) {
	statuses := make([]*gwv1.PolicyStatus, len(t.policyList))
	warnings := make([]fieldErrors, len(t.policyList))
	forEach(len(t.policyList), func(i int) { statuses[i], warnings[i] = t.policyStatus(t.policyList[i], foreign) })
	for i, pi := range t.policyList {
		p := pi.p
		t.st.Policies[ObjectKey{Kind: policyKind(p), Namespace: p.Namespace, Name: p.Name}] = statuses[i]
		t.st.warnings = append(t.st.warnings, warnings[i]...)
	}
}

// jwtRule says which policy's JWT authentication a target keeps, for status messages.
const jwtRule = "on one target the oldest policy's JWT authentication applies, by creationTimestamp " +
	"then namespace/name; a more specific target's overrides it"

// authRule says which policy's backend auth a target keeps, for status messages.
const authRule = "on one target the oldest policy's backend auth applies, by creationTimestamp " +
	"then namespace/name; a more specific target's overrides it"

// ancestorResult is what a policy's targets make of one of its ancestors: the condition of the
// first target found there and, when that one is Accepted, where its JWT authentication or its
// backend auth loses to another policy's on the same target (GEP-713: Conflicted) and where it
// applies.
type ancestorResult struct {
	ref           gwv1.ParentReference
	cond          metav1.Condition
	conflicts     []string // JWT: "through FIELD: POLICY sets it on TARGET too and wins"
	jwtApplies    []string // fields of the targets through which its JWT authentication applies
	authConflicts []string // backend auth, as conflicts
	authApplies   []string // fields of the targets through which its backend auth applies
}

// policyStatus makes the status of one policy, and the warnings of the JWT authentication and
// the backend auth it sets that lose to another policy's; foreign is foreignBackends.
func (t *translation) policyStatus(pi *policyInfo, foreign map[nsName]bool) (*gwv1.PolicyStatus, fieldErrors) {
	ctrl := gwv1.GatewayController(t.opts.ControllerName)
	p := pi.p
	kind := policyKind(p)
	var buf [1]ancestorResult // most policies have one ancestor
	found := buf[:0]
	var warnings fieldErrors
	for i := range pi.targets {
		tg := &pi.targets[i]
		var c metav1.Condition
		switch {
		case tg.msg != "":
			c = condition(string(gwv1.PolicyConditionAccepted), false, string(gwv1.PolicyReasonTargetNotFound), tg.field()+": "+tg.msg, p.Generation)
		case pi.invalid:
			c = condition(string(gwv1.PolicyConditionAccepted), false, string(gwv1.PolicyReasonInvalid), pi.invalidMessage(), p.Generation)
		default:
			c = condition(string(gwv1.PolicyConditionAccepted), true, string(gwv1.PolicyReasonAccepted), "", p.Generation)
		}
		conflict := ""
		if w := pi.jwtWinner(tg); w != nil {
			conflict = fmt.Sprintf("through %s: %s sets it on %s too and wins", tg.field(), w.key(), targetString(p.Namespace, tg.ref))
			warnings.add(kind, p.Namespace, p.Name, "spec.traffic.jwtAuthentication", "not applied "+conflict+" ("+jwtRule+")")
		}
		authConflict := ""
		if w := pi.authWinner(tg); w != nil {
			authConflict = fmt.Sprintf("through %s: %s sets it on %s too and wins", tg.field(), w.key(), targetString(p.Namespace, tg.ref))
			warnings.add(kind, p.Namespace, p.Name, "spec.backend.auth", "not applied "+authConflict+" ("+authRule+")")
		}
		refs := make([]gwv1.ParentReference, 0, 1)
		for _, gi := range t.gatewaysOf(p.Namespace, *tg) {
			refs = append(refs, gi.ref)
		}
		if len(refs) == 0 {
			if t.foreignTarget(p.Namespace, tg, foreign) {
				continue
			}
			refs = append(refs, ancestorRef(p.Namespace, tg.ref))
		}
		for _, ref := range refs {
			k := slices.IndexFunc(found, func(a ancestorResult) bool { return sameRef(&a.ref, &ref) })
			if k < 0 {
				if len(found) == maxAncestors {
					continue
				}
				k = len(found)
				found = append(found, ancestorResult{ref: ref, cond: c})
			}
			a := &found[k]
			if a.cond.Status != metav1.ConditionTrue {
				continue
			}
			switch {
			case conflict != "":
				a.conflicts = append(a.conflicts, conflict)
			case pi.jwt != nil && tg.msg == "":
				a.jwtApplies = append(a.jwtApplies, tg.field())
			}
			switch {
			case authConflict != "":
				a.authConflicts = append(a.authConflicts, authConflict)
			case pi.auth != nil && tg.msg == "":
				a.authApplies = append(a.authApplies, tg.field())
			}
		}
	}
	// the status and its ancestors' conditions (one each), allocated together for one ancestor
	var st *gwv1.PolicyStatus
	var conds []metav1.Condition
	if len(found) == 1 {
		b := &policyStatusBlock{}
		st, b.st.Ancestors, conds = &b.st, b.ancestors[:], b.conds[:]
	} else {
		st, conds = &gwv1.PolicyStatus{Ancestors: make([]gwv1.PolicyAncestorStatus, len(found))}, make([]metav1.Condition, len(found))
	}
	var unenforced string
	if len(pi.unenforced) > 0 {
		where := slices.Sorted(slices.Values(pi.unenforced))
		unenforced = "not enforced on " + strings.Join(where, ", ") + ": not an MCP backend (an AgentgatewayBackend with spec.mcp, or a Service port with appProtocol " +
			AppProtocolMCP + " or " + AppProtocolMCPSSE + "), so ext_proc reads no MCP message there; the rule answers 500"
		warnings.add(kind, p.Namespace, p.Name, "spec.backend.mcp.authorization", unenforced)
	}
	var overridden string
	if len(pi.authOverridden) > 0 {
		over := slices.Sorted(slices.Values(pi.authOverridden))
		overridden = "not applied to the routes to " + strings.Join(over, ", ") + ": a backend's own spec.policies.auth takes precedence"
		warnings.add(kind, p.Namespace, p.Name, "spec.backend.auth", overridden)
	}
	var otherNS string
	if len(pi.authOtherNS) > 0 {
		routes := slices.Sorted(maps.Keys(pi.authOtherNS))
		shown := routes[:min(len(routes), maxAffectedNames)]
		otherNS = "not applied to the routes of other namespaces than " + pi.p.Namespace + ": " + strings.Join(shown, ", ")
		if n := len(routes) - len(shown); n > 0 {
			otherNS += " and " + strconv.Itoa(n) + " more"
		}
		otherNS += " (a Gateway's or listener's backend auth applies only to the routes of its own namespace: " +
			"another namespace's route chooses the backend the credential, or with passthrough the callers' tokens, would reach)"
		warnings.add(kind, p.Namespace, p.Name, "spec.backend.auth", otherNS)
	}
	for i := range found {
		a := &found[i]
		if len(a.conflicts) > 0 || len(a.authConflicts) > 0 {
			a.cond = pi.conflictCondition(a)
		}
		if unenforced != "" && a.cond.Status == metav1.ConditionTrue {
			a.cond.Message = strings.TrimPrefix(a.cond.Message+"; spec.backend.mcp.authorization: "+unenforced, "; ")
		}
		if overridden != "" && a.cond.Status == metav1.ConditionTrue {
			a.cond.Message = strings.TrimPrefix(a.cond.Message+"; spec.backend.auth: "+overridden, "; ")
		}
		if otherNS != "" && a.cond.Status == metav1.ConditionTrue {
			a.cond.Message = strings.TrimPrefix(a.cond.Message+"; spec.backend.auth: "+otherNS, "; ")
		}
		conds[i] = a.cond
		st.Ancestors[i] = gwv1.PolicyAncestorStatus{AncestorRef: a.ref, ControllerName: ctrl, Conditions: conds[i : i+1 : i+1]}
	}
	return st, warnings
}

// policyStatusBlock holds the status of a policy with one ancestor (most policies).
type policyStatusBlock struct {
	st        gwv1.PolicyStatus
	ancestors [1]gwv1.PolicyAncestorStatus
	conds     [1]metav1.Condition
}

// conflictCondition is the Accepted condition of an ancestor where the policy's JWT
// authentication or backend auth loses to another policy's on some target. Gateway API's
// Conflicted reason says the policy is not accepted because it cannot merge with another on the
// same target: that is the condition when nothing else of the policy applies there. When its
// authorization rules apply there, or its JWT authentication or backend auth through another
// target (or the one of the two that does not lose), the policy is Accepted and the message says
// what is and what is not applied (GEP-713's "partially enforced").
func (pi *policyInfo) conflictCondition(a *ancestorResult) metav1.Condition {
	var lost []string
	if len(a.conflicts) > 0 {
		lost = append(lost, "spec.traffic.jwtAuthentication is not applied "+strings.Join(a.conflicts, "; ")+" ("+jwtRule+")")
	}
	if len(a.authConflicts) > 0 {
		lost = append(lost, "spec.backend.auth is not applied "+strings.Join(a.authConflicts, "; ")+" ("+authRule+")")
	}
	msg := strings.Join(lost, "; ")
	var applied []string
	if len(pi.traffic) > 0 {
		applied = append(applied, "spec.traffic.authorization")
	}
	if len(pi.mcp) > 0 {
		applied = append(applied, "spec.backend.mcp.authorization")
	}
	if pi.rateLimit != nil {
		applied = append(applied, "spec.traffic.rateLimit")
	}
	if len(a.jwtApplies) > 0 {
		applied = append(applied, "spec.traffic.jwtAuthentication through "+strings.Join(a.jwtApplies, ", "))
	}
	if len(a.authApplies) > 0 {
		applied = append(applied, "spec.backend.auth through "+strings.Join(a.authApplies, ", "))
	}
	if len(applied) == 0 {
		return condition(string(gwv1.PolicyConditionAccepted), false, string(gwv1.PolicyReasonConflicted), msg, pi.p.Generation)
	}
	return condition(string(gwv1.PolicyConditionAccepted), true, string(gwv1.PolicyReasonAccepted),
		msg+"; applied: "+strings.Join(applied, "; "), pi.p.Generation)
}

// jwtWinner returns the policy whose JWT authentication applies at a resolved target in place of
// the one pi sets there: the one merge takes at that level (jwtSetter). It is nil when pi sets
// none, is refused, or is the one taken.
func (pi *policyInfo) jwtWinner(tg *policyTarget) *policyInfo {
	return pi.winner(tg, pi.jwt != nil, jwtSetter)
}

// authWinner returns the policy whose backend auth applies at a resolved target in place of the
// one pi sets there: the one authOf takes at that level (authSetter). It is nil when pi sets
// none, is refused, or is the one taken.
func (pi *policyInfo) authWinner(tg *policyTarget) *policyInfo {
	return pi.winner(tg, pi.auth != nil, authSetter)
}

// winner returns the policy that setter takes at tg's level in place of pi, which sets the
// setting (sets); nil when pi does not set it, is refused, or is the one taken.
func (pi *policyInfo) winner(tg *policyTarget, sets bool, setter func([]*policyInfo) *policyInfo) *policyInfo {
	if !sets || pi.invalid || tg.level == nil {
		return nil
	}
	if w := setter(tg.level[tg.key]); w != pi {
		return w
	}
	return nil
}

// jwtSetter returns the policy whose JWT authentication a level of the index (its policies at one
// attachment point, oldest first) sets: the oldest valid one that sets one, or nil.
func jwtSetter(level []*policyInfo) *policyInfo {
	for _, pi := range level {
		if !pi.invalid && pi.jwt != nil {
			return pi
		}
	}
	return nil
}

// key names the policy as "Kind ns/name".
func (pi *policyInfo) key() string {
	return ObjectKey{Kind: policyKind(pi.p), Namespace: pi.p.Namespace, Name: pi.p.Name}.String()
}

// targetString names a policy target of namespace ns: "Gateway ns/name", "listener L of Gateway
// ns/name", "HTTPRoute ns/name", "rule R of HTTPRoute ns/name", "AgentgatewayBackend ns/name".
func targetString(ns string, ref v1alpha1.PolicyTargetReference) string {
	s := string(ref.Kind) + " " + keyString(ns, string(ref.Name))
	switch {
	case ref.SectionName == nil || *ref.SectionName == "":
		return s
	case ref.Kind == KindGateway:
		return "listener " + string(*ref.SectionName) + " of " + s
	case ref.Kind == KindHTTPRoute:
		return "rule " + string(*ref.SectionName) + " of " + s
	}
	return s + " section " + string(*ref.SectionName)
}

// foreignTarget reports whether a target that takes effect on no served Gateway is other
// controllers' business only: a Gateway this controller does not serve, an HTTPRoute this
// controller writes no parent status for (attached only to such Gateways), an
// AgentgatewayBackend that only such routes use (foreign is foreignBackends). A target that is
// not found stays this controller's (TargetNotFound): no other controller would say why.
func (t *translation) foreignTarget(ns string, tg *policyTarget, foreign map[nsName]bool) bool {
	switch {
	case tg.foreign:
		return true
	case tg.msg != "":
		return false
	case tg.ref.Group == gatewayGroup && tg.ref.Kind == KindHTTPRoute:
		ri := t.routeByName[key(ns, string(tg.ref.Name))]
		return ri != nil && t.foreignRoute(ri)
	case tg.ref.Group == backendGroup && tg.ref.Kind == KindAgentgatewayBackend:
		return foreign[key(ns, string(tg.ref.Name))]
	}
	return false
}

// foreignRoute reports whether a route is only other controllers' business: this controller
// writes no parent status for it, and one of its parentRefs is a Gateway that exists.
func (t *translation) foreignRoute(ri *routeInfo) bool {
	r := ri.r
	if t.st.HTTPRoutes[key(r.Namespace, r.Name)] != nil {
		return false
	}
	return slices.ContainsFunc(r.Spec.ParentRefs, func(pr gwv1.ParentReference) bool {
		gw, ok := parentGateway(r.Namespace, &pr)
		return ok && t.allGateways[gw] != nil
	})
}

// foreignBackends returns the AgentgatewayBackends whose every user is a foreign route (and
// that have one), for the status of the policies that target them; nil when no route is
// foreign.
func (t *translation) foreignBackends() map[nsName]bool {
	foreignRoutes := make([]bool, len(t.routes))
	anyForeign := false
	for i, ri := range t.routes {
		foreignRoutes[i] = t.foreignRoute(ri)
		anyForeign = anyForeign || foreignRoutes[i]
	}
	if !anyForeign {
		return nil
	}
	out := map[nsName]bool{}
	for i, ri := range t.routes {
		r := ri.r
		foreign := foreignRoutes[i]
		for i := range r.Spec.Rules {
			for k := range r.Spec.Rules[i].BackendRefs {
				group, kind, nn := backendRefOf(r.Namespace, &r.Spec.Rules[i].BackendRefs[k].BackendObjectReference)
				if group != backendGroup || kind != KindAgentgatewayBackend {
					continue
				}
				if was, seen := out[nn]; !seen || was {
					out[nn] = foreign
				}
			}
		}
	}
	return out
}

// gatewaysOf returns the served Gateways a resolved HTTPRoute or AgentgatewayBackend target
// takes effect on, in the order they were found.
func (t *translation) gatewaysOf(ns string, tg policyTarget) []*gatewayInfo {
	if tg.msg != "" {
		return nil
	}
	switch {
	case tg.ref.Group == gatewayGroup && tg.ref.Kind == KindHTTPRoute:
		if ri := t.routeByName[key(ns, string(tg.ref.Name))]; ri != nil {
			return ri.gateways.list
		}
	case tg.ref.Group == backendGroup && tg.ref.Kind == KindAgentgatewayBackend:
		if bi := t.backends[key(ns, string(tg.ref.Name))]; bi != nil && bi.target != nil {
			return bi.target.gateways.list
		}
	}
	return nil
}

// sameRef reports whether two references name the same object and section.
func sameRef(a, b *gwv1.ParentReference) bool {
	return a.Name == b.Name && ptrString(a.Group) == ptrString(b.Group) && ptrString(a.Kind) == ptrString(b.Kind) &&
		ptrString(a.Namespace) == ptrString(b.Namespace) && ptrString(a.SectionName) == ptrString(b.SectionName)
}

func ptrString[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}

// refFields holds the pointed-to fields of one reference, allocated together.
type refFields struct {
	group gwv1.Group
	kind  gwv1.Kind
	ns    gwv1.Namespace
}

// gatewayRef is the reference to a served Gateway as a policy's ancestor (gatewayInfo.ref).
func gatewayRef(gi *gatewayInfo) gwv1.ParentReference {
	f := &refFields{group: gatewayGroup, kind: KindGateway, ns: gwv1.Namespace(gi.gw.Namespace)}
	return gwv1.ParentReference{Group: &f.group, Kind: &f.kind, Namespace: &f.ns, Name: gwv1.ObjectName(gi.gw.Name)}
}

func ancestorRef(ns string, ref v1alpha1.PolicyTargetReference) gwv1.ParentReference {
	f := &refFields{group: ref.Group, kind: ref.Kind, ns: gwv1.Namespace(ns)}
	return gwv1.ParentReference{Group: &f.group, Kind: &f.kind, Namespace: &f.ns, Name: ref.Name, SectionName: ref.SectionName}
}
