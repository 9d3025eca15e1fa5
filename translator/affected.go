package translator

import (
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reasons of the <Kind>Affected conditions.
const (
	// ReasonPolicyAffected: every policy of the kind that targets the object is accepted.
	ReasonPolicyAffected = "PolicyAffected"
	// ReasonPolicyRefused: a policy of the kind that targets the object is refused; the routes
	// it would apply to answer 500 until it is fixed (fail closed).
	ReasonPolicyRefused = "PolicyRefused"
)

// maxAffectedNames is the most policy names an Affected condition's message lists.
const maxAffectedNames = 8

// affected is what the policies of one kind make of one target: the condition it gets.
type affected struct {
	key               affectedKey
	accepted, refused []string // policy names, oldest first
}

// affectedKey is one object (or Gateway listener) a policy targets, and the policy's kind.
type affectedKey struct {
	targetKind, namespace, name, listener, policyKind string
}

// affectedConditions puts on every object that policies target the condition GEP-713 requires
// of a policy implementation: DOMAIN/KINDAffected (DOMAIN: the controllerName's, as
// mcpgate.dev/AgentgatewayPolicyAffected), True, naming the policies, so that a Route's or a
// Gateway's owner sees that a policy applies without listing policies. A Gateway gets it in its
// conditions (a policy targeting a listener: in that listener's), an HTTPRoute in each of its
// parents this controller serves (a rule's policy too: a route's status has no rule entries), an
// AgentgatewayBackend in its conditions. A refused policy affects its targets as well (their
// routes answer 500): the reason is then PolicyRefused. Targets that are not found or are only
// another controller's business (foreignTarget; foreign is foreignBackends) get nothing.
func (t *translation) affectedConditions(foreign map[nsName]bool) {
	found := make(map[affectedKey]int, len(t.policyList)) // index in list
	var list []affected                                   // in the order found
	for _, pi := range t.policyList {
		kind := policyKind(pi.p)
		for i := range pi.targets {
			tg := &pi.targets[i]
			if tg.level == nil || t.foreignTarget(pi.p.Namespace, tg, foreign) {
				continue
			}
			k := affectedKey{targetKind: string(tg.ref.Kind), namespace: pi.p.Namespace, name: string(tg.ref.Name), policyKind: kind}
			if k.targetKind == KindGateway && tg.ref.SectionName != nil {
				k.listener = string(*tg.ref.SectionName)
			}
			n, ok := found[k]
			if !ok {
				n = len(list)
				found[k] = n
				list = append(list, affected{key: k})
			}
			names := &list[n].accepted
			if pi.invalid {
				names = &list[n].refused
			}
			if name := pi.p.Name; len(*names) == 0 || (*names)[len(*names)-1] != name {
				*names = append(*names, name)
			}
		}
	}
	domain, _, _ := strings.Cut(t.opts.ControllerName, "/")
	types := map[string]string{} // policy kind -> condition type
	for i := range list {
		a := &list[i]
		k := a.key
		typ, ok := types[k.policyKind]
		if !ok {
			typ = domain + "/" + k.policyKind + "Affected"
			types[k.policyKind] = typ
		}
		nn := key(k.namespace, k.name)
		switch k.targetKind {
		case KindGateway:
			st, g := t.st.Gateways[nn], t.gateways[nn]
			if st == nil || g == nil {
				continue
			}
			c := a.condition(typ, g.gw.Generation)
			if k.listener == "" {
				st.Conditions = append(st.Conditions, c)
				continue
			}
			for i := range st.Listeners {
				if string(st.Listeners[i].Name) == k.listener {
					st.Listeners[i].Conditions = append(st.Listeners[i].Conditions, c)
				}
			}
		case KindHTTPRoute:
			st, ri := t.st.HTTPRoutes[nn], t.routeByName[nn]
			if st == nil || ri == nil {
				continue
			}
			c := a.condition(typ, ri.r.Generation)
			for i := range st.Parents { // the translator writes only its own parents entries
				st.Parents[i].Conditions = append(st.Parents[i].Conditions, c)
			}
		case KindAgentgatewayBackend:
			st, b := t.st.Backends[nn], t.backends[nn]
			if st == nil || b == nil {
				continue
			}
			st.Conditions = append(st.Conditions, a.condition(typ, b.b.Generation))
		}
	}
}

// condition is the Affected condition of typ for the policies in a.
func (a *affected) condition(typ string, generation int64) metav1.Condition {
	kind := a.key.policyKind
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
	if len(a.accepted) > 0 {
		msg = names("applied here", a.accepted)
	}
	if len(a.refused) == 0 {
		return condition(typ, true, ReasonPolicyAffected, msg, generation)
	}
	what := "refused (see its status), so the routes it applies to answer 500 until it is fixed"
	if len(a.refused) > 1 {
		what = "refused (see their status), so the routes they apply to answer 500 until they are fixed"
	}
	if msg != "" {
		msg += "; "
	}
	return condition(typ, true, ReasonPolicyRefused, msg+names(what, a.refused), generation)
}
