// AgentgatewayPolicies, the policy stage (indexPolicies, concurrent with compileRoutes): each
// policy is validated and translated into its parts of the ext_proc policy resource (JWT
// authentication, with mcpoauth.go for MCP; CEL authorization rules, checked through check.go;
// the rate limit, ratelimit.go), and its targetRefs are resolved into the policy index. Merging
// the policies of a route rule is in policymerge.go, the policies' status in policystatus.go.

package translator

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/extproc/jwt"
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
	// auth is the credential of backend.auth (translateAuth); nil without one
	auth *routeAuth
	// stale says that the Secret of backend.auth.secretRef could not be read and a copy read
	// before is used (a warning)
	stale string
	// authOverridden are the AgentgatewayBackends ("AgentgatewayBackend NS/NAME") whose own
	// spec.policies.auth applies where this policy's backend.auth would (authOf); guarded by
	// translation.mergeMu while routes attach
	authOverridden []string
	// authOtherNS are the routes ("HTTPRoute NS/NAME") of other namespaces where this policy's
	// backend.auth, set on a Gateway or a listener, would apply and does not (authOf); guarded
	// by translation.mergeMu while routes attach
	authOtherNS map[string]bool
	targets     []policyTarget
	// problems are the refusals of validatePolicy
	problems fieldErrors
	resolved int // targets found
	order    int // its index in translation.policyList
	// unenforced are the backendRefs its MCP rules apply to that are not MCP ("HTTPRoute NS/NAME
	// spec.rules[I].backendRefs[J]"), whose rules answer 500 (mcpUnenforced); guarded by
	// translation.mergeMu while routes attach
	unenforced []string
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
	pols := make([]*v1alpha1.AgentgatewayPolicy, 0, len(t.in.Policies)+len(t.in.UnreadablePolicies))
	unreadable := make(map[*v1alpha1.AgentgatewayPolicy]*UnreadablePolicy, len(t.in.UnreadablePolicies))
	all := t.in.Policies
	for i := range t.in.UnreadablePolicies {
		u := &t.in.UnreadablePolicies[i]
		unreadable[u.Policy] = u
		if i == 0 {
			all = slices.Clip(all)
		}
		all = append(all, u.Policy)
	}
	routeRefs, backendRefs := 0, 0 // size hints of the levels with many targets
	for _, p := range all {
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
		if u := unreadable[pols[i]]; u != nil {
			t.refuseUnreadable(pi, u)
		} else {
			t.validatePolicy(pi, pols[i])
		}
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
		t.policyAuths = t.policyAuths || pi.auth != nil
		t.st.add(pi.problems)
		kind := policyKind(p)
		if pi.stale != "" {
			t.st.warnings = append(t.st.warnings, FieldError{Kind: kind, Namespace: p.Namespace, Name: p.Name, Field: "spec.backend.auth.secretRef", Message: pi.stale})
		}
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
	if b := s.Backend; b != nil && b.Auth != nil {
		a, field, msg, stale := t.translateAuth(p.Namespace, b.Auth, "spec.backend.auth")
		if msg != "" {
			bad(field, msg)
		} else {
			pi.auth, pi.stale = &a, stale
		}
	}
}

// refuseUnreadable refuses a policy whose document did not load, into pi: what it targets fails
// closed.
func (t *translation) refuseUnreadable(pi *policyInfo, u *UnreadablePolicy) {
	p := u.Policy
	kind := policyKind(p)
	pi.p, pi.source, pi.invalid = p, kind+"/"+p.Namespace+"/"+p.Name, true
	msg := "its document does not load: " + u.Message
	pi.errs = append(pi.errs, u.Field+": "+msg)
	pi.problems.add(kind, p.Namespace, p.Name, u.Field, msg)
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
			// ext_proc's own check: a URL it refuses would make it reject the whole policy update.
			if err := jwt.CheckJWKSURL(r.URL); err != nil {
				bad(f()+".jwks.remote.url", err.Error())
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
