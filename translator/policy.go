package translator

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

const (
	backendGroup        = "agentgateway.dev"
	maxPolicyNameBytes  = 200
	defaultJWKSCacheFor = 5 * time.Minute
)

// policyInfo is one policy object after validation.
type policyInfo struct {
	p       *v1alpha1.AgentgatewayPolicy
	source  string // "Kind/ns/name"
	invalid bool
	errs    []string // "field: message" of each refusal
	jwt     *policyv1.JWTAuthentication
	traffic []*policyv1.Rule
	mcp     []*policyv1.Rule
	// rateLimit is the per-route LocalRateLimit of traffic.rateLimit (translateRateLimit), shared
	// by every route it applies to; nil without one
	rateLimit *anypb.Any
	targets   []policyTarget
	// problems are the refusals of validatePolicy
	problems fieldErrors
	resolved int // targets found
	order    int // its index in translation.policyList
	// room for the target of a policy with one (most policies): indexPolicies allocates the
	// policies together
	oneTarget [1]policyTarget
}

// policyTarget is one targetRef of a policy: where it attaches, or why it does not resolve.
type policyTarget struct {
	ref   v1alpha1.PolicyTargetReference
	index int                      // in spec.targetRefs
	msg   string                   // why it does not resolve; "" when it does
	level map[string][]*policyInfo // the level of the policy index it attaches at (nil: unresolved)
	key   string                   // its key in level
	// foreign: a Gateway that exists and that this controller does not serve. The policy is
	// the business of that Gateway's controller: no refusal, no ancestor status.
	foreign bool
	// first holds the list of level[key] while the policy is the only one there (most targets)
	first [1]*policyInfo
}

// field is the path of the targetRef, spec.targetRefs[I].
func (tg *policyTarget) field() string { return "spec.targetRefs[" + strconv.Itoa(tg.index) + "]" }

// maxAncestors is the most ancestors a PolicyStatus holds (Gateway API).
const maxAncestors = 16

// policyIndex maps attachment points to the policies attached there, each list oldest first.
// Keys: gateway "ns/name", listener "ns/name/listener", route "ns/name", rule
// "ns/name/rule", backend "ns/name".
type policyIndex struct {
	gateway, listener, route, rule, backend map[string][]*policyInfo
}

func policyKind(p *v1alpha1.AgentgatewayPolicy) string {
	if p.Kind == KindEnterpriseAgentgatewayPolicy {
		return KindEnterpriseAgentgatewayPolicy
	}
	return KindAgentgatewayPolicy
}

// indexPolicies validates every policy and resolves its targets on its own (forEach), then
// indexes them oldest first.
func (t *translation) indexPolicies() *policyIndex {
	pols := make([]*v1alpha1.AgentgatewayPolicy, 0, len(t.in.Policies))
	routeRefs, backendRefs := 0, 0 // size hints of the levels with many targets
	for _, p := range t.in.Policies {
		if p != nil && p.Name != "" {
			pols = append(pols, p)
			for _, ref := range p.Spec.TargetRefs {
				switch ref.Kind {
				case KindHTTPRoute:
					routeRefs++
				case KindAgentgatewayBackend:
					backendRefs++
				}
			}
		}
	}
	idx := &policyIndex{
		gateway: map[string][]*policyInfo{}, listener: map[string][]*policyInfo{}, route: make(map[string][]*policyInfo, routeRefs),
		rule: map[string][]*policyInfo{}, backend: make(map[string][]*policyInfo, backendRefs),
	}
	sortByAge(pols, func(p *v1alpha1.AgentgatewayPolicy) (*metav1.ObjectMeta, string) { return &p.ObjectMeta, policyKind(p) })
	t.policyList = make([]*policyInfo, len(pols))
	infos := make([]policyInfo, len(pols)) // one allocation for all
	forEach(len(pols), func(i int) {
		pi := &infos[i]
		t.validatePolicy(pi, pols[i])
		pi.order = i
		pi.targets = inPlace(pi.oneTarget[:], len(pi.p.Spec.TargetRefs))
		for k, ref := range pi.p.Spec.TargetRefs {
			pi.targets[k] = policyTarget{ref: ref, index: k}
			t.resolvePolicyTarget(idx, pi.p.Namespace, &pi.targets[k])
		}
		t.policyList[i] = pi
	})
	for _, pi := range t.policyList {
		p := pi.p
		t.rateLimits = t.rateLimits || pi.rateLimit != nil
		t.st.add(pi.problems)
		kind := policyKind(p)
		for i := range pi.targets {
			tg := &pi.targets[i]
			switch {
			case tg.foreign:
			case tg.msg != "":
				t.st.refuse(kind, p.Namespace, p.Name, tg.field(), tg.msg)
			default:
				l := tg.level[tg.key]
				if len(l) == 0 {
					tg.first[0] = pi
					l = tg.first[:] // appending the next policy copies it
				} else {
					l = append(l, pi)
				}
				tg.level[tg.key] = l
				pi.resolved++
			}
		}
		if len(p.Spec.TargetRefs) == 0 {
			t.st.refuse(kind, p.Namespace, p.Name, "spec.targetRefs", "at least one target is required")
		}
	}
	return idx
}

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

// ancestorResult is what a policy's targets make of one of its ancestors: the condition of the
// first target found there and, when that one is Accepted, where its JWT authentication loses
// to another policy's on the same target (GEP-713: Conflicted) and where it applies.
type ancestorResult struct {
	ref        gwv1.ParentReference
	cond       metav1.Condition
	conflicts  []string // "through FIELD: POLICY sets it on TARGET too and wins"
	jwtApplies []string // fields of the targets through which it applies
}

// policyStatus makes the status of one policy, and the warnings of the JWT authentication it
// sets that loses to another policy's; foreign is foreignBackends.
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
			switch {
			case a.cond.Status != metav1.ConditionTrue:
			case conflict != "":
				a.conflicts = append(a.conflicts, conflict)
			case pi.jwt != nil && tg.msg == "":
				a.jwtApplies = append(a.jwtApplies, tg.field())
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
	for i := range found {
		a := &found[i]
		if len(a.conflicts) > 0 {
			a.cond = pi.conflictCondition(a)
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
// authentication loses to another policy's on some target. Gateway API's Conflicted reason says
// the policy is not accepted because it cannot merge with another on the same target: that is
// the condition when nothing else of the policy applies there. When its authorization rules
// apply there, or its JWT authentication through another target, the policy is Accepted and the
// message says what is and what is not applied (GEP-713's "partially enforced").
func (pi *policyInfo) conflictCondition(a *ancestorResult) metav1.Condition {
	msg := "spec.traffic.jwtAuthentication is not applied " + strings.Join(a.conflicts, "; ") + " (" + jwtRule + ")"
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
	if pi.jwt == nil || pi.invalid || tg.level == nil {
		return nil
	}
	if w := jwtSetter(tg.level[tg.key]); w != pi {
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

// resolvePolicyTarget finds where a targetRef of a policy in namespace ns attaches: its level and
// key in idx, or the message that says why it does not, or that it is foreign.
func (t *translation) resolvePolicyTarget(idx *policyIndex, ns string, tg *policyTarget) {
	if tg.ref.Group == gatewayGroup && tg.ref.Kind == KindGateway && t.gateways[key(ns, string(tg.ref.Name))] == nil &&
		t.allGateways[key(ns, string(tg.ref.Name))] != nil {
		tg.foreign = true
		return
	}
	tg.level, tg.key, tg.msg = t.policyTargetLevel(idx, ns, tg.ref)
}

// policyTargetLevel finds where a targetRef attaches; msg says why it does not.
func (t *translation) policyTargetLevel(idx *policyIndex, ns string, ref v1alpha1.PolicyTargetReference) (map[string][]*policyInfo, string, string) {
	name := string(ref.Name)
	section := ""
	if ref.SectionName != nil {
		section = string(*ref.SectionName)
	}
	switch {
	case ref.Group == gatewayGroup && ref.Kind == KindGateway:
		gi := t.gateways[key(ns, name)]
		if gi == nil {
			return nil, "", fmt.Sprintf("Gateway %s not found", keyString(ns, name))
		}
		if section == "" {
			return idx.gateway, gi.key, ""
		}
		for _, li := range gi.listeners {
			if string(li.l.Name) == section {
				return idx.listener, li.key, ""
			}
		}
		return nil, "", fmt.Sprintf("Gateway %s has no listener %q", gi.key, section)
	case ref.Group == gatewayGroup && ref.Kind == KindHTTPRoute:
		ri := t.routeByName[key(ns, name)]
		if ri == nil {
			return nil, "", fmt.Sprintf("HTTPRoute %s not found", keyString(ns, name))
		}
		if section == "" {
			return idx.route, ri.key, ""
		}
		for _, rule := range ri.r.Spec.Rules {
			if rule.Name != nil && string(*rule.Name) == section {
				return idx.rule, ri.key + "/" + section, ""
			}
		}
		return nil, "", fmt.Sprintf("HTTPRoute %s has no rule named %q", ri.key, section)
	case ref.Group == backendGroup && ref.Kind == KindAgentgatewayBackend:
		bi := t.backends[key(ns, name)]
		if bi == nil {
			return nil, "", fmt.Sprintf("AgentgatewayBackend %s not found", keyString(ns, name))
		}
		if section != "" {
			return nil, "", "sectionName is not supported for AgentgatewayBackend targets (the policy applies to the whole backend)"
		}
		return idx.backend, bi.key, ""
	}
	gk := string(ref.Kind)
	if ref.Group != "" {
		gk = string(ref.Group) + "/" + gk
	}
	return nil, "", fmt.Sprintf("target kind %s is not supported: use a Gateway or HTTPRoute (group %s) or an AgentgatewayBackend (group %s)",
		gk, gatewayGroup, backendGroup)
}

// validatePolicy checks a policy's CEL and JWKS and builds its parts of the policy resource, into
// pi.
func (t *translation) validatePolicy(pi *policyInfo, p *v1alpha1.AgentgatewayPolicy) {
	kind := policyKind(p)
	pi.p, pi.source = p, kind+"/"+p.Namespace+"/"+p.Name
	bad := func(field, msg string) {
		pi.invalid = true
		pi.errs = append(pi.errs, field+": "+msg)
		pi.problems.add(kind, p.Namespace, p.Name, field, msg)
	}
	s := &p.Spec
	if s.Traffic == nil && s.Backend == nil {
		bad("spec", "at least one of traffic and backend must be set")
	}
	if tr := s.Traffic; tr != nil {
		if j := tr.JWTAuthentication; j != nil {
			pi.jwt = t.translateJWT(j, "spec.traffic.jwtAuthentication", bad)
		}
		if a := tr.Authorization; a != nil {
			pi.traffic = t.translateRules(a, pi.source, "traffic", "spec.traffic.authorization", bad)
		}
		if rl := tr.RateLimit; rl != nil {
			pi.rateLimit = translateRateLimit(rl, "spec.traffic.rateLimit", bad)
		}
	}
	if b := s.Backend; b != nil && b.MCP != nil && b.MCP.Authorization != nil {
		pi.mcp = t.translateRules(b.MCP.Authorization, pi.source, "mcp", "spec.backend.mcp.authorization", bad)
	}
}

// invalidMessage lists the policy's refusals for its status.
func (pi *policyInfo) invalidMessage() string {
	return strings.Join(pi.errs, "; ") + " (the routes it applies to answer 500 until it is fixed)"
}

func (t *translation) translateJWT(j *v1alpha1.JWTAuthentication, field string, bad func(string, string)) *policyv1.JWTAuthentication {
	var one *oneJWTProvider // the messages of one provider (most policies) in one allocation
	var out *policyv1.JWTAuthentication
	if len(j.Providers) == 1 {
		one = &oneJWTProvider{}
		out = &one.jwt
		out.Providers = one.list[:0]
	} else {
		out = &policyv1.JWTAuthentication{}
	}
	switch j.Mode {
	case "", v1alpha1.JWTModeStrict:
		out.Mode = policyv1.JWTAuthentication_STRICT
	case v1alpha1.JWTModeOptional:
		out.Mode = policyv1.JWTAuthentication_OPTIONAL
	case v1alpha1.JWTModePermissive:
		out.Mode = policyv1.JWTAuthentication_PERMISSIVE
	default:
		bad(field+".mode", unsupported(j.Mode, v1alpha1.JWTModeStrict, v1alpha1.JWTModeOptional, v1alpha1.JWTModePermissive))
	}
	if len(j.Providers) == 0 {
		bad(field+".providers", "at least one provider is required")
	}
	for i, p := range j.Providers {
		f := func() string { return field + ".providers[" + strconv.Itoa(i) + "]" } // built only for errors
		if p.Issuer == "" {
			bad(f()+".issuer", "an issuer is required")
		}
		var jp *policyv1.JWTProvider
		var inline *policyv1.JWTProvider_InlineJwks
		if one != nil {
			jp, inline = &one.provider, &one.inline
		} else {
			jp = &policyv1.JWTProvider{}
		}
		jp.Issuer, jp.Audiences = p.Issuer, p.Audiences
		switch {
		case (p.JWKS.Inline == nil) == (p.JWKS.Remote == nil):
			bad(f()+".jwks", "exactly one of inline and remote must be set")
		case p.JWKS.Inline != nil:
			if err := t.chk.checkJWKS(*p.JWKS.Inline); err != nil {
				bad(f()+".jwks.inline", err.Error())
			}
			if inline == nil {
				inline = &policyv1.JWTProvider_InlineJwks{}
			}
			inline.InlineJwks = *p.JWKS.Inline
			jp.Jwks = inline
		default:
			r := p.JWKS.Remote
			if !strings.HasPrefix(r.URL, "https://") && !strings.HasPrefix(r.URL, "http://") {
				bad(f()+".jwks.remote.url", fmt.Sprintf("%q is not an http(s) URL", r.URL))
			}
			d := defaultJWKSCacheFor
			if r.CacheDuration != nil {
				d = r.CacheDuration.Duration
			}
			if d < defaultJWKSCacheFor {
				bad(f()+".jwks.remote.cacheDuration", fmt.Sprintf("%s: must be at least 5m", d))
			}
			jp.Jwks = &policyv1.JWTProvider_RemoteJwks{RemoteJwks: &policyv1.RemoteJWKS{Url: r.URL, CacheDuration: durationpb.New(d)}}
		}
		out.Providers = append(out.Providers, jp)
	}
	if j.MCP != nil {
		out.Mcp = translateJWTMCP(j, out, field+".mcp", bad)
	}
	return out
}

// oneJWTProvider holds a JWT authentication with one provider.
type oneJWTProvider struct {
	jwt      policyv1.JWTAuthentication
	list     [1]*policyv1.JWTProvider
	provider policyv1.JWTProvider
	inline   policyv1.JWTProvider_InlineJwks
}

// translateRules returns the rules of an authorization block ("traffic" or "mcp") at field of the
// policy source, each named SOURCE#BLOCK[INDEX] (its expression's index), so that what decided a
// request names the expression; bad reports a refused field.
func (t *translation) translateRules(a *v1alpha1.Authorization, source, block, field string, bad func(string, string)) []*policyv1.Rule {
	var action policyv1.Rule_Action
	switch a.Action {
	case "", v1alpha1.AuthorizationActionAllow:
		action = policyv1.Rule_ALLOW
	case v1alpha1.AuthorizationActionDeny:
		action = policyv1.Rule_DENY
	case v1alpha1.AuthorizationActionRequire:
		action = policyv1.Rule_REQUIRE
	default:
		bad(field+".action", unsupported(a.Action, v1alpha1.AuthorizationActionAllow, v1alpha1.AuthorizationActionDeny, v1alpha1.AuthorizationActionRequire))
	}
	if len(a.Policy.MatchExpressions) == 0 {
		bad(field+".policy.matchExpressions", "at least one expression is required")
	}
	exprs := a.Policy.MatchExpressions
	// the rules and the list of them: one allocation for one rule (most blocks), else two
	var rules []*policyv1.Rule
	var msgs []policyv1.Rule
	if len(exprs) == 1 {
		b := &oneRule{}
		rules, msgs = b.list[:], b.rule[:]
	} else {
		rules, msgs = make([]*policyv1.Rule, len(exprs)), make([]policyv1.Rule, len(exprs))
	}
	for i, e := range exprs {
		if err := t.chk.checkCEL(string(e)); err != nil {
			bad(fmt.Sprintf("%s.policy.matchExpressions[%d]", field, i), err.Error())
		}
		r := &msgs[i]
		r.Action, r.Expression, r.Source = action, string(e), source+"#"+block+"["+strconv.Itoa(i)+"]"
		rules[i] = r
	}
	return rules
}

// oneRule holds the rules of an authorization block with one expression.
type oneRule struct {
	list [1]*policyv1.Rule
	rule [1]policyv1.Rule
}

// attachment is where a route rule's traffic goes: the levels policies attach at.
type attachment struct {
	gateway, listener, route, rule, backend string // index keys; "" = level absent
}

// levels returns the policies of an attachment's levels, least specific first: Gateway,
// listener, HTTPRoute, rule, backend (a level the attachment lacks has none).
func (t *translation) levels(a attachment) [5][]*policyInfo {
	idx := t.policies
	levels := [5][]*policyInfo{idx.gateway[a.gateway], idx.listener[a.listener], idx.route[a.route], idx.rule[a.rule], idx.backend[a.backend]}
	if a.listener == "" {
		levels[1] = nil
	}
	if a.rule == "" {
		levels[3] = nil
	}
	if a.backend == "" {
		levels[4] = nil
	}
	return levels
}

// merge returns the merged policy of an attachment, or nil when no policy applies. The JWT
// authentication comes from the most specific level that sets one (the oldest policy within a
// level); authorization rules from every level, least specific first. The policy's name joins
// its sources, plus "jwt=SOURCE" when several of them set JWT authentication. Routes attach
// concurrently: the merges of one name (the same policies, so the same content) share the
// first one made.
func (t *translation) merge(a attachment) *mergedPolicy {
	levels := t.levels(a)
	var jwtFrom *policyInfo
	var invalid []string
	for l := len(levels) - 1; l >= 0; l-- {
		for _, pi := range levels[l] {
			if pi.invalid {
				invalid = append(invalid, pi.source)
			}
		}
		if jwtFrom == nil {
			jwtFrom = jwtSetter(levels[l])
		}
	}
	if len(invalid) > 0 {
		sort.Strings(invalid)
		return &mergedPolicy{invalid: invalid}
	}
	var buf [8]*policyInfo
	taken := policySet{list: buf[:0]}
	for _, lv := range levels {
		for _, pi := range lv {
			if pi == jwtFrom || len(pi.traffic) > 0 || len(pi.mcp) > 0 {
				taken = taken.add(pi)
			}
		}
	}
	contrib := taken.list
	if len(contrib) == 0 {
		return nil
	}
	var sbuf [len(buf) + 1]string
	sources := sbuf[:0]
	withJWT := 0
	for _, pi := range contrib {
		sources = append(sources, pi.source)
		if pi.jwt != nil {
			withJWT++
		}
	}
	nameParts := sources
	if withJWT > 1 {
		// the same sources can merge to different JWT settings (each route takes them from
		// its most specific level): the name says whose apply
		nameParts = append(sources, "jwt="+jwtFrom.source)
	}
	name := policyName(nameParts)
	t.mergeMu.Lock()
	defer t.mergeMu.Unlock()
	if prev, ok := t.merged[name]; ok {
		return prev // most merges of many routes are shared: nothing is allocated for them
	}
	b := &mergedBlock{}
	pol := &b.pol
	pol.Name = name
	if len(sources) == 1 {
		b.source[0] = sources[0]
		pol.Sources = b.source[:]
	} else {
		pol.Sources = slices.Clone(sources)
	}
	if jwtFrom != nil {
		pol.Jwt = jwtFrom.jwt
	}
	for _, pi := range contrib {
		pol.TrafficRules = appendRules(pol.TrafficRules, pi.traffic)
		pol.McpRules = appendRules(pol.McpRules, pi.mcp)
	}
	b.m.policy = pol
	t.merged[name] = &b.m
	return &b.m
}

// mergedBlock holds the messages of a new merge, allocated together (a route with its own
// policy has one).
type mergedBlock struct {
	m      mergedPolicy
	pol    policyv1.Policy
	source [1]string
}

// appendRules appends a contributor's rules to a merged policy's. The first rules are shared
// with the contributor, not copied: nothing modifies either list, and the capacity is clipped
// so that appending the next contributor's copies them.
func appendRules(dst, src []*policyv1.Rule) []*policyv1.Rule {
	if len(dst) == 0 && len(src) > 0 {
		return slices.Clip(src)
	}
	return append(dst, src...)
}

// policySet collects the policies that contribute to a merge, least specific first, each once.
// Only a policy with several targets can come up twice (at several levels, or twice at one):
// it is looked up by a scan of the list, or in a set once the list is long (many policies on
// one Gateway).
type policySet struct {
	list  []*policyInfo
	multi map[*policyInfo]bool // made when the list is long
}

// add returns the set with pi. It takes and returns the set by value, so that a list backed by
// an array of the caller's stays on its stack.
func (s policySet) add(pi *policyInfo) policySet {
	if pi.resolved > 1 {
		if s.multi == nil && len(s.list) > 16 {
			s.multi = make(map[*policyInfo]bool, 2*len(s.list))
			for _, p := range s.list {
				s.multi[p] = true
			}
		}
		switch {
		case s.multi != nil && s.multi[pi], s.multi == nil && slices.Contains(s.list, pi):
			return s
		case s.multi != nil:
			s.multi[pi] = true
		}
	}
	s.list = append(s.list, pi)
	return s
}

// policyName joins the sources with "+", or hashes them when that is longer than 200 bytes.
func policyName(sources []string) string {
	if len(sources) == 1 && len(sources[0]) <= maxPolicyNameBytes {
		return sources[0]
	}
	n := strings.Join(sources, "+")
	if len(n) <= maxPolicyNameBytes {
		return n
	}
	sum := sha256.Sum256([]byte(n))
	return "sha256:" + hex.EncodeToString(sum[:8])
}
