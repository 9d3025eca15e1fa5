package translator

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Reasons of the <Kind>Affected conditions.
const (
	// ReasonPolicyAffected: every policy of the kind that targets the object is accepted.
	ReasonPolicyAffected = "PolicyAffected"
	// ReasonPolicyRefused: a policy of the kind that targets the object is refused; the routes
	// it would apply to answer 500 until it is fixed (fail closed).
	ReasonPolicyRefused = "PolicyRefused"
)

// policyKinds are the policy kinds whose Affected conditions the translator writes.
var policyKinds = []string{KindAgentgatewayPolicy, KindEnterpriseAgentgatewayPolicy}

// affectedType is the type of the Affected condition of policy kind for the controller
// controllerName: DOMAIN/KINDAffected, DOMAIN the controllerName's.
func affectedType(controllerName, kind string) string {
	domain, _, _ := strings.Cut(controllerName, "/")
	return domain + "/" + kind + "Affected"
}

// ownedConditionTypes are the condition types of Gateway API the translator writes (besides the
// Affected ones, affectedType); the controller writes no others.
var ownedConditionTypes = []string{
	string(gwv1.GatewayConditionAccepted), string(gwv1.GatewayConditionProgrammed),
	string(gwv1.ListenerConditionResolvedRefs), string(gwv1.ListenerConditionConflicted),
	string(gwv1.RouteConditionPartiallyInvalid), string(gwv1.GatewayConditionInsecureFrontendValidationMode),
}

// OwnsCondition reports whether conditions of type typ are written by the controller
// controllerName (empty: DefaultControllerName): the types the translator writes on any object
// (Accepted, Programmed, ResolvedRefs, Conflicted, PartiallyInvalid,
// InsecureFrontendValidationMode and the DOMAIN/KINDAffected of its policy kinds). Whoever writes
// status back replaces or removes only these: Gateway API says "Implementations MUST NOT remove
// or reorder Conditions that they are not directly responsible for" (other controllers', policy
// controllers' such as kuadrant.io/...Affected).
func OwnsCondition(controllerName, typ string) bool {
	if controllerName == "" {
		controllerName = DefaultControllerName
	}
	if slices.Contains(ownedConditionTypes, typ) {
		return true
	}
	for _, kind := range policyKinds {
		if typ == affectedType(controllerName, kind) {
			return true
		}
	}
	return false
}

// maxAffectedNames is the most policy names an Affected condition's message lists.
const maxAffectedNames = 8

// affectedConditions puts on every object that policies target the condition GEP-713 requires
// of a policy implementation: DOMAIN/KINDAffected (DOMAIN: the controllerName's, as
// mcpgate.dev/AgentgatewayPolicyAffected), True, naming the policies, so that a Route's or a
// Gateway's owner sees that a policy applies without listing policies. A Gateway gets it in its
// conditions (a policy targeting a listener: in that listener's), an HTTPRoute in each of its
// parents this controller serves (a rule's policy too: a route's status has no rule entries), an
// AgentgatewayBackend in its conditions. A refused policy affects its targets as well (their
// routes answer 500): the reason is then PolicyRefused. Targets that are not found or are only
// another controller's business (foreignTarget; foreign is foreignBackends) get nothing. The
// policies of a target are those the policy index holds for it that take effect there
// (effectivePolicies: not a Conflicted one); each route's conditions are made on their own
// (forEach).
func (t *translation) affectedConditions(foreign map[nsName]bool) {
	idx := t.policies
	types := map[string]string{} // policy kind -> condition type
	for _, kind := range policyKinds {
		types[kind] = affectedType(t.opts.ControllerName, kind)
	}
	for _, gi := range t.served {
		st, gen := t.st.Gateways[key(gi.gw.Namespace, gi.gw.Name)], gi.gw.Generation
		st.Conditions = appendAffected(st.Conditions, types, gen, effectivePolicies(idx.gateway[gi.key]))
		for i, li := range gi.listeners { // the listener statuses are in this order
			st.Listeners[i].Conditions = appendAffected(st.Listeners[i].Conditions, types, gen, effectivePolicies(idx.listener[li.key]))
		}
	}
	forEach(len(t.routes), func(i int) {
		ri := t.routes[i]
		nn := key(ri.r.Namespace, ri.r.Name)
		st := t.st.HTTPRoutes[nn]
		if st == nil || t.routeByName[nn] != ri { // not this controller's, or another object's name
			return
		}
		policies := t.routePolicies(ri)
		for i := range st.Parents { // the translator writes only its own parents entries
			st.Parents[i].Conditions = appendAffected(st.Parents[i].Conditions, types, ri.r.Generation, policies)
		}
	})
	if len(idx.backend) == 0 {
		return
	}
	for nn, bi := range t.backends {
		if st := t.st.Backends[nn]; st != nil && !foreign[nn] {
			st.Conditions = appendAffected(st.Conditions, types, bi.b.Generation, effectivePolicies(idx.backend[bi.key]))
		}
	}
}

// routePolicies returns the policies that target a route or its rules and take effect there
// (effectivePolicies), oldest first.
func (t *translation) routePolicies(ri *routeInfo) []*policyInfo {
	idx := t.policies
	out := effectivePolicies(idx.route[ri.key])
	if len(idx.rule) == 0 {
		return out
	}
	var ruleKeys []string
	for _, rule := range ri.r.Spec.Rules {
		if rule.Name == nil {
			continue
		}
		k := ri.key + "/" + string(*rule.Name)
		if l := effectivePolicies(idx.rule[k]); len(l) > 0 && !slices.Contains(ruleKeys, k) { // two rules may share a name
			ruleKeys = append(ruleKeys, k)
			out = append(slices.Clip(out), l...)
		}
	}
	if len(ruleKeys) > 0 {
		slices.SortStableFunc(out, func(a, b *policyInfo) int { return cmp.Compare(a.order, b.order) })
	}
	return out
}

// effectivePolicies returns the policies of one attachment point of the index (oldest first)
// that take effect there, which its Affected condition names: the refused ones (the routes they
// apply to answer 500) and the valid ones with a setting that applies. A valid policy whose only
// settings are a JWT authentication or a backend auth that an older policy on the same point sets
// too (jwtSetter, authSetter: merge and authOf take that one; the policy's status says
// Conflicted) applies nothing there and is left out, as is one that sets nothing. level itself
// when every policy takes effect.
func effectivePolicies(level []*policyInfo) []*policyInfo {
	jwt, auth := jwtSetter(level), authSetter(level)
	takes := func(pi *policyInfo) bool {
		return pi.invalid || len(pi.traffic) > 0 || len(pi.mcp) > 0 || pi.rateLimit != nil ||
			(pi.jwt != nil && pi == jwt) || (pi.auth != nil && pi == auth)
	}
	n := 0
	for _, pi := range level {
		if takes(pi) {
			n++
		}
	}
	if n == len(level) {
		return level
	}
	out := make([]*policyInfo, 0, n)
	for _, pi := range level {
		if takes(pi) {
			out = append(out, pi)
		}
	}
	return out
}

// appendAffected appends to out the Affected condition of each kind of the policies of one
// target (oldest first; a policy that targets it twice is there twice), in the order of each
// kind's oldest policy.
func appendAffected(out []metav1.Condition, types map[string]string, generation int64, policies []*policyInfo) []metav1.Condition {
	var done []string // the kinds done
	for n, first := range policies {
		kind := policyKind(first.p)
		if slices.Contains(done, kind) {
			continue
		}
		done = append(done, kind)
		var accepted, refused []string
		for _, pi := range policies[n:] {
			if policyKind(pi.p) != kind {
				continue
			}
			if pi.invalid {
				refused = appendOnce(refused, pi.p.Name)
			} else {
				accepted = appendOnce(accepted, pi.p.Name)
			}
		}
		out = append(out, affectedCondition(types[kind], kind, generation, accepted, refused))
	}
	return out
}

// appendOnce appends name to names unless it is the last one (a policy that targets an object
// twice).
func appendOnce(names []string, name string) []string {
	if len(names) > 0 && names[len(names)-1] == name {
		return names
	}
	return append(names, name)
}

// affectedCondition is the Affected condition of typ for the accepted and refused policies of
// kind.
func affectedCondition(typ, kind string, generation int64, accepted, refused []string) metav1.Condition {
	// names lists the policies of one state: at most maxAffectedNames, then how many more
	names := func(what string, list []string) string {
		shown := list[:min(len(list), maxAffectedNames)]
		s := what + ": " + kind + " " + strings.Join(shown, ", ")
		if n := len(list) - len(shown); n > 0 {
			s += " and " + strconv.Itoa(n) + " more"
		}
		return s
	}
	var msg string
	if len(accepted) > 0 {
		msg = names("applied here", accepted)
	}
	if len(refused) == 0 {
		return condition(typ, true, ReasonPolicyAffected, msg, generation)
	}
	what := "refused (see its status), so the routes it applies to answer 500 until it is fixed"
	if len(refused) > 1 {
		what = "refused (see their status), so the routes they apply to answer 500 until they are fixed"
	}
	if msg != "" {
		msg += "; "
	}
	return condition(typ, true, ReasonPolicyRefused, msg+names(what, refused), generation)
}
