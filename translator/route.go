package translator

import (
	"bytes"
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/mcpgate/mcpgate/contract"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

const (
	// mcpIdleTimeout bounds how long an MCP stream (a legacy SSE GET, a Streamable HTTP GET)
	// may stay silent; MCP routes have no overall request timeout.
	mcpIdleTimeout = time.Hour
	bodyNoBackend  = "mcpgate: this route has no valid backend\n"
	bodyBadPolicy  = "mcpgate: the policy of this route is not accepted\n"
	bodyBadRule    = "mcpgate: this route rule is not supported\n"
	// bodyAmbiguousPath answers an ambiguous path (RefuseAmbiguousPathsRoute).
	bodyAmbiguousPath = "mcpgate: path parameters (\";\" in the path) and escaped \"/\", \"\\\" or \".\" left after normalization are refused\n"
	// ambiguousPathRegex matches a path with ";" in it, or with %2F, %5C or %2E (any hex case)
	// after normalization, which only a double-escaped request still has (normalization
	// unescapes slashes before it decodes escaped unreserved characters, so /a%2%46..%2%46b
	// becomes /a%2F..%2Fb, which an upstream that decodes it serves as /b). Envoy matches
	// safe_regex against the whole path without the query string (route_components.proto,
	// RouteMatch.safe_regex), so these in the query do not match.
	ambiguousPathRegex = ".*(;|%2[fFeE]|%5[cC]).*"
)

// precedence orders routes within a virtual host as Gateway API says: exact path, then regular
// expression (implementation-specific: after exact, before prefixes), then the longest prefix;
// then a method match, more header matches, more query matches; then the oldest route, its
// namespace/name, the rule and the match index.
type precedence struct {
	pathRank, pathLen, headers, queries int
	method                              bool
	created                             metav1.Time
	ns, name                            string
	rule, match                         int
}

// compare is negative when a comes before b.
func (a *precedence) compare(b *precedence) int {
	switch {
	case a.pathRank != b.pathRank:
		return cmp.Compare(a.pathRank, b.pathRank)
	case a.pathLen != b.pathLen:
		return cmp.Compare(b.pathLen, a.pathLen)
	case a.method != b.method:
		if a.method {
			return -1
		}
		return 1
	case a.headers != b.headers:
		return cmp.Compare(b.headers, a.headers)
	case a.queries != b.queries:
		return cmp.Compare(b.queries, a.queries)
	}
	if c := a.created.Compare(b.created.Time); c != 0 {
		return c
	}
	if c := strings.Compare(a.ns, b.ns); c != 0 {
		return c
	}
	if c := strings.Compare(a.name, b.name); c != 0 {
		return c
	}
	if a.rule != b.rule {
		return cmp.Compare(a.rule, b.rule)
	}
	return cmp.Compare(a.match, b.match)
}

type compiledMatch struct {
	m      *routev3.RouteMatch
	prefix string // the path prefix of a PathPrefix match ("" for "/"), for ReplacePrefixMatch
	isPfx  bool
	prec   precedence
	index  int
}

// ruleRef is a valid backendRef of a rule.
type ruleRef struct {
	tg     *target
	weight uint32
}

// compiledRule is what a rule does, independent of the listener it is attached to.
type compiledRule struct {
	index   int
	name    string
	routeID string // "NS/NAME/rule/I", the x-mcpgate-route metadata
	matches []compiledMatch
	failMsg string // non-empty: the rule cannot be honoured and answers 500

	redirect              *gwv1.HTTPRequestRedirectFilter // checked by checkRedirect
	reqAdd, respAdd       []*corev3.HeaderValueOption
	reqRemove, respRemove []string
	hostRewrite           string
	fullPath              string // URLRewrite ReplaceFullPath
	replacePrefix         *string
	timeout               *durationpb.Duration
	cors                  *anypb.Any // the CorsPolicy of the rule's CORS filter, nil without one
	refs                  []ruleRef
	invalidWeight         uint32
	hasRefs               bool
	// reqChanges are the request header changes of the rule's RequestHeaderModifier filters with
	// their literal values (reqAdd's are escaped): a prefixMode Never backend's route passes them
	// to ext_proc's resolver (contract.Mux.RequestHeaders). backendRef filters are refused
	// (resolveBackendRef), so they are the changes of every backendRef of the rule alike.
	reqChanges contract.HeaderChanges
	// room for the match and the backendRef of a rule with one each (most rules)
	oneMatch [1]compiledMatch
	oneRef   [1]ruleRef
}

// redirectPrefix is the ReplacePrefixMatch of the rule's RequestRedirect, or nil.
func (c *compiledRule) redirectPrefix() *string {
	if c.redirect == nil || c.redirect.Path == nil || c.redirect.Path.Type != gwv1.PrefixMatchHTTPPathModifier {
		return nil
	}
	return c.redirect.Path.ReplacePrefixMatch
}

// compiledRoute is an HTTPRoute's rules plus what its status says about them.
type compiledRoute struct {
	r           *gwv1.HTTPRoute
	info        *routeInfo
	key         string
	rules       []compiledRule
	refReason   string // ResolvedRefs reason when false
	refMsgs     []string
	invalidMsgs []string    // "field: message" of each invalid part of a rule
	badRules    []string    // the fields of the rules that cannot be honoured (they answer 500)
	problems    fieldErrors // the refusals of compileRoute and attachRoute
	// warnings are what the route's valid rules ask that Envoy does otherwise (Status.Warnings);
	// the Accepted condition's message says them too
	warnings fieldErrors

	// set by attachRoute
	status   *gwv1.HTTPRouteStatus
	attached []*listenerInfo // the listeners the route is attached to
	uses     []ruleUse       // its rules on those listeners, in attachment order

	// room for the rule, listener and rule use of a route with one rule on one listener (most
	// routes): compiledRoutes allocates the routes together
	oneRule     [1]compiledRule
	oneListener [1]*listenerInfo
	oneUse      [1]ruleUse
}

// allInvalid reports whether no rule of the route can be honoured: the route is not accepted.
func (cr *compiledRoute) allInvalid() bool {
	return len(cr.rules) > 0 && len(cr.badRules) == len(cr.rules)
}

// compileRoutes sorts the routes oldest first and compiles every route on its own (forEach).
func (t *translation) compileRoutes() []compiledRoute {
	sortByAge(t.routes, func(ri *routeInfo) (*metav1.ObjectMeta, string) { return &ri.r.ObjectMeta, "" })
	compiled := make([]compiledRoute, len(t.routes)) // one allocation for all
	forEach(len(t.routes), func(i int) { t.compileRoute(&compiled[i], t.routes[i]) })
	return compiled
}

// attachRoutes attaches every route and builds its Envoy routes on its own (forEach), then
// records the routes' statuses and registers the routes on their Gateways, each in age order;
// the two passes write apart and run concurrently.
func (t *translation) attachRoutes(compiled []compiledRoute) {
	forEach(len(compiled), func(i int) { t.attachRoute(&compiled[i]) })
	concurrently(func() {
		for i := range compiled {
			t.routeStatus(&compiled[i])
		}
	}, func() {
		for i := range compiled {
			t.registerRoute(&compiled[i])
		}
	})
}

// routeStatus records an attached route's status, refusals and warnings.
func (t *translation) routeStatus(cr *compiledRoute) {
	r := cr.r
	t.st.add(cr.problems)
	if len(cr.status.Parents) > 0 {
		t.st.HTTPRoutes[key(r.Namespace, r.Name)] = cr.status
		t.st.warnings = append(t.st.warnings, cr.warnings...)
	}
}

// attachRoute attaches a route to the listeners its parentRefs select, builds the Envoy routes
// of its rules there and its status.
func (t *translation) attachRoute(cr *compiledRoute) {
	r := cr.r
	var conds []metav1.Condition // the conditions of a single parent: allocated with the status
	if len(r.Spec.ParentRefs) == 1 {
		b := &routeStatusBlock{}
		cr.status, b.st.Parents, conds = &b.st, b.parents[:0], b.conds[:0]
	} else {
		cr.status = &gwv1.HTTPRouteStatus{RouteStatus: gwv1.RouteStatus{Parents: make([]gwv1.RouteParentStatus, 0, len(r.Spec.ParentRefs))}}
	}
	for i, pr := range r.Spec.ParentRefs {
		ps, ok := t.attachParent(cr, i, pr, conds)
		if ok {
			cr.status.Parents = append(cr.status.Parents, ps)
		}
	}
	for i := range cr.uses {
		t.buildRule(&cr.uses[i])
	}
}

// routeStatusBlock holds the status of a route with one parentRef (most routes).
type routeStatusBlock struct {
	st      gwv1.HTTPRouteStatus
	parents [1]gwv1.RouteParentStatus
	conds   [routeParentConditions]metav1.Condition
}

// routeParentConditions is how many conditions a route's parent status has at most: Accepted,
// ResolvedRefs, maybe PartiallyInvalid.
const routeParentConditions = 3

// registerRoute registers an attached route: its listeners' route counts, the Gateways on its
// backends' targets, and on its Gateways its clusters, policies and Envoy routes. Routes register
// in age order, so that these lists do not depend on the schedule.
func (t *translation) registerRoute(cr *compiledRoute) {
	for _, li := range cr.attached {
		li.attached++
	}
	for i := range cr.uses {
		u := &cr.uses[i]
		c, gb := u.c, u.gi.build
		for _, ref := range c.refs {
			if ref.tg.backend != "" {
				ref.tg.gateways.add(u.gi)
			}
		}
		switch {
		case u.bad || c.failMsg != "": // answers 500
		case c.redirect != nil:
			gb.addPolicy(u.base)
		default:
			for i, ref := range c.refs {
				gb.addTarget(ref.tg)
				gb.addPolicy(u.merges[i])
			}
		}
		for k := range c.matches {
			for _, h := range u.hosts {
				gb.vhost(u.li, h).add(u.routes[k], &c.matches[k].prec)
			}
		}
	}
}

// parentGateway returns the Gateway a parentRef of a route in namespace ns names; ok is false
// when it names another kind.
func parentGateway(ns string, pr *gwv1.ParentReference) (gw nsName, ok bool) {
	if (pr.Group != nil && *pr.Group != gatewayGroup) || (pr.Kind != nil && *pr.Kind != KindGateway) {
		return nsName{}, false
	}
	if pr.Namespace != nil && *pr.Namespace != "" {
		ns = string(*pr.Namespace)
	}
	return key(ns, string(pr.Name)), true
}

// backendRefOf returns the group, kind and object a backendRef of a route in namespace ns names
// (a Service of that namespace unless it says otherwise).
func backendRefOf(ns string, ref *gwv1.BackendObjectReference) (group, kind string, obj nsName) {
	kind = KindService
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	return group, kind, key(ns, string(ref.Name))
}

// attachParent attaches the route to the listeners one parentRef selects and returns that
// parent's status; ok is false when the parent is not this controller's. The conditions go to
// conds, or to a new slice when conds is nil.
func (t *translation) attachParent(cr *compiledRoute, i int, pr gwv1.ParentReference, conds []metav1.Condition) (gwv1.RouteParentStatus, bool) {
	r := cr.r
	gw, ok := parentGateway(r.Namespace, &pr)
	if !ok {
		return gwv1.RouteParentStatus{}, false
	}
	gen := r.Generation
	if conds == nil {
		conds = make([]metav1.Condition, 0, routeParentConditions)
	}
	ps := gwv1.RouteParentStatus{ParentRef: pr, ControllerName: gwv1.GatewayController(t.opts.ControllerName), Conditions: conds}
	field := func() string { return "spec.parentRefs[" + strconv.Itoa(i) + "]" } // built only for errors
	gi := t.gateways[gw]
	if gi == nil {
		if t.allGateways[gw] != nil || t.opts.RequireGatewayClass {
			return ps, false // another controller's Gateway, or unknowable in a cluster
		}
		msg := fmt.Sprintf("Gateway %s not found", keyString(gw.Namespace, gw.Name))
		cr.problems.add(KindHTTPRoute, r.Namespace, r.Name, field(), msg)
		ps.Conditions = append(ps.Conditions, condition(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNoMatchingParent), msg, gen))
		ps.Conditions = appendRouteRefConditions(ps.Conditions, cr, gen)
		return ps, true
	}
	var candidates []*listenerInfo
	for _, li := range gi.listeners {
		if pr.SectionName != nil && string(*pr.SectionName) != string(li.l.Name) {
			continue
		}
		if pr.Port != nil && *pr.Port != li.l.Port {
			continue
		}
		candidates = append(candidates, li)
	}
	reason, msg := "", ""
	n := 0
	if len(candidates) == 0 {
		reason, msg = string(gwv1.RouteReasonNoMatchingParent), fmt.Sprintf("Gateway %s has no listener matching the sectionName and port", gi.key)
	} else {
		allowed := 0
		for _, li := range candidates {
			if !t.admits(li, r.Namespace) {
				continue
			}
			allowed++
			hosts, ok := intersectHostnames(li, r.Spec.Hostnames)
			if !ok {
				continue
			}
			n++
			if cr.allInvalid() || slices.Contains(cr.attached, li) {
				continue
			}
			cr.attached = append(cr.attached, li)
			t.addRoutes(gi, li, cr, hosts)
		}
		switch {
		case n > 0:
		case allowed == 0:
			reason, msg = string(gwv1.RouteReasonNotAllowedByListeners), fmt.Sprintf("no listener of Gateway %s admits this route (allowedRoutes, or listeners not accepted)", gi.key)
		default:
			reason, msg = string(gwv1.RouteReasonNoMatchingListenerHostname), fmt.Sprintf("no hostname of the route matches a listener hostname of Gateway %s", gi.key)
		}
	}
	switch {
	case n > 0 && cr.allInvalid():
		cr.problems.add(KindHTTPRoute, r.Namespace, r.Name, field(), "not attached: no rule can be honoured (see the errors of spec.rules)")
		ps.Conditions = append(ps.Conditions, condition(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonUnsupportedValue),
			"no rule can be honoured: "+strings.Join(cr.invalidMsgs, "; "), gen))
	case n > 0:
		ps.Conditions = append(ps.Conditions, condition(string(gwv1.RouteConditionAccepted), true, string(gwv1.RouteReasonAccepted), cr.warningMessage(), gen))
		cr.info.gateways.add(gi)
	default:
		cr.problems.add(KindHTTPRoute, r.Namespace, r.Name, field(), msg)
		ps.Conditions = append(ps.Conditions, condition(string(gwv1.RouteConditionAccepted), false, reason, msg, gen))
	}
	ps.Conditions = appendRouteRefConditions(ps.Conditions, cr, gen)
	return ps, true
}

// warningMessage joins the route's warnings as "field: message; ..." ("" when none).
func (cr *compiledRoute) warningMessage() string {
	if len(cr.warnings) == 0 {
		return ""
	}
	msgs := make([]string, len(cr.warnings))
	for i, w := range cr.warnings {
		msgs[i] = w.Field + ": " + w.Message
	}
	return strings.Join(msgs, "; ")
}

// appendRouteRefConditions appends the ResolvedRefs and PartiallyInvalid conditions of a route.
func appendRouteRefConditions(out []metav1.Condition, cr *compiledRoute, gen int64) []metav1.Condition {
	if cr.refReason != "" {
		out = append(out, condition(string(gwv1.RouteConditionResolvedRefs), false, cr.refReason, strings.Join(cr.refMsgs, "; "), gen))
	} else {
		out = append(out, condition(string(gwv1.RouteConditionResolvedRefs), true, string(gwv1.RouteReasonResolvedRefs), "", gen))
	}
	if len(cr.badRules) > 0 && !cr.allInvalid() {
		// Gateway API: the message starts with "Dropped Rule"; the dropped rules answer 500
		// rather than let their requests reach other routes.
		out = append(out, condition(string(gwv1.RouteConditionPartiallyInvalid), true, string(gwv1.RouteReasonUnsupportedValue),
			fmt.Sprintf("Dropped Rule %s (their requests answer 500): %s", strings.Join(cr.badRules, ", "), strings.Join(cr.invalidMsgs, "; ")), gen))
	}
	return out
}

// intersectHostnames returns the hostnames a route serves on a listener ("" = any), and false
// when none intersect.
func intersectHostnames(li *listenerInfo, route []gwv1.Hostname) ([]string, bool) {
	if len(route) == 0 {
		return li.hosts, true
	}
	listener := li.hostname
	var out []string
	seen := map[string]bool{}
	add := func(h string) {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, rh := range route {
		h := strings.ToLower(string(rh))
		switch {
		case listener == "" || h == listener:
			add(h)
		case strings.HasPrefix(listener, "*.") && hostMatches(listener, h):
			add(h)
		case strings.HasPrefix(h, "*.") && hostMatches(h, listener):
			add(listener)
		}
	}
	return out, len(out) > 0
}

// hostMatches reports whether h (a host or a narrower wildcard) falls under wildcard w.
func hostMatches(w, h string) bool {
	suffix := w[1:] // ".example.com"
	return strings.HasSuffix(h, suffix) && len(h) > len(suffix)
}

// compileRoute resolves a route's matches, filters and backendRefs once for all listeners, into
// cr.
func (t *translation) compileRoute(cr *compiledRoute, ri *routeInfo) {
	r := ri.r
	cr.r, cr.info, cr.key = r, ri, ri.key
	cr.rules = inPlace(cr.oneRule[:], len(r.Spec.Rules))
	cr.attached, cr.uses = cr.oneListener[:0], cr.oneUse[:0]
	for i := range cr.rules {
		t.compileRule(cr, i)
	}
}

// inPlace returns a slice of n elements: room when it has n, else a new one.
func inPlace[T any](room []T, n int) []T {
	if n == len(room) {
		return room
	}
	return make([]T, n)
}

// compileRule compiles the route's rule i into cr.rules[i].
func (t *translation) compileRule(cr *compiledRoute, i int) {
	r := cr.r
	rule := &r.Spec.Rules[i]
	c := &cr.rules[i]
	c.index, c.routeID = i, cr.key+"/rule/"+strconv.Itoa(i)
	if rule.Name != nil {
		c.name = string(*rule.Name)
	}
	field := func() string { return "spec.rules[" + strconv.Itoa(i) + "]" } // built only for errors
	// an invalid part makes the whole rule answer 500: serving it without that part (a match,
	// a filter, a timeout) would do something else than asked
	invalid := func(f, msg string) {
		cr.invalidMsgs = append(cr.invalidMsgs, f+": "+msg)
		cr.problems.add(KindHTTPRoute, r.Namespace, r.Name, f, msg)
		if c.failMsg == "" {
			cr.badRules = append(cr.badRules, field())
		}
		c.failMsg = bodyBadRule
	}
	matches := rule.Matches
	if len(matches) == 0 {
		matches = []gwv1.HTTPRouteMatch{{}}
	}
	c.matches = inPlace(c.oneMatch[:], len(matches))[:0]
	c.refs = inPlace(c.oneRef[:], len(rule.BackendRefs))[:0]
	for j := range matches {
		m, f, err := compileMatch(&matches[j])
		if err != "" {
			invalid(fmt.Sprintf("%s.matches[%d]%s", field(), j, f), err)
			continue
		}
		m.index = j
		m.prec.created, m.prec.ns, m.prec.name, m.prec.rule, m.prec.match = r.CreationTimestamp, r.Namespace, r.Name, i, j
		c.matches = append(c.matches, m)
	}
	// what Envoy does otherwise than asked, said once the rule is known to be served
	var warnings fieldErrors
	for k := range rule.Filters {
		f := &rule.Filters[k]
		if fld, msg := t.applyFilter(c, f); msg != "" {
			invalid(fmt.Sprintf("%s.filters[%d]%s", field(), k, fld), msg)
			continue
		}
		for _, w := range serverHeaderChanges(f.ResponseHeaderModifier) {
			warnings.add(KindHTTPRoute, r.Namespace, r.Name, fmt.Sprintf("%s.filters[%d].responseHeaderModifier%s", field(), k, w), msgServerHeader)
		}
	}
	// Gateway API forbids these combinations (the CRD refuses them; files are not checked)
	if c.redirect != nil && (c.hostRewrite != "" || c.fullPath != "" || c.replacePrefix != nil) {
		invalid(field()+".filters", "RequestRedirect and URLRewrite cannot be used together")
	}
	if c.redirect != nil && len(rule.BackendRefs) > 0 {
		invalid(field()+".filters", "RequestRedirect cannot be used together with backendRefs")
	}
	if c.cors != nil && c.redirect != nil {
		k := slices.IndexFunc(rule.Filters, func(f gwv1.HTTPRouteFilter) bool { return f.Type == gwv1.HTTPRouteFilterCORS })
		warnings.add(KindHTTPRoute, r.Namespace, r.Name, fmt.Sprintf("%s.filters[%d]", field(), k), msgCORSRedirect)
	}
	if c.replacePrefix != nil || c.redirectPrefix() != nil {
		for _, m := range c.matches {
			if !m.isPfx {
				invalid(field()+".filters", "ReplacePrefixMatch needs PathPrefix matches")
				break
			}
		}
	}
	if tm := rule.Timeouts; tm != nil && tm.Request != nil {
		d, err := time.ParseDuration(string(*tm.Request))
		if err != nil || d < 0 {
			invalid(field()+".timeouts.request", fmt.Sprintf("%q is not a duration", *tm.Request))
		} else {
			c.timeout = durationpb.New(d)
		}
	}
	for k := range rule.BackendRefs {
		t.resolveBackendRef(cr, c, i, k, &rule.BackendRefs[k])
	}
	for _, ref := range c.refs {
		if ref.tg.mux != nil {
			if msg := ref.tg.mux.metadataTooLong(c); msg != "" {
				invalid(field()+".filters", msg)
				break
			}
		}
	}
	if c.timeout != nil && c.timeout.AsDuration() > 0 && slices.ContainsFunc(c.refs, func(r ruleRef) bool { return r.tg.mcp != "" }) {
		warnings.add(KindHTTPRoute, r.Namespace, r.Name, field()+".timeouts.request", fmt.Sprintf(msgStreamTimeout, *rule.Timeouts.Request))
	}
	if c.failMsg == "" {
		cr.warnings = append(cr.warnings, warnings...)
	}
}

// Warnings of route rules that Envoy serves otherwise than they ask.
const (
	// msgServerHeader: the connection manager sets the server header of every answer after the
	// route's header changes (server_header_transformation OVERWRITE, server_name "envoy").
	msgServerHeader = `has no effect: Envoy sets the server header of every response to "envoy" after the route's header changes`
	// msgStreamTimeout (with the timeout): Envoy's route timeout bounds a whole request, answer
	// included, so it ends the streams of an MCP route.
	msgStreamTimeout = "%s bounds each whole request, its answer included: the SSE streams of this MCP route (legacy SSE GETs, Streamable HTTP GETs, POSTs answered as a stream) end after it"
	// msgCORSRedirect: Envoy's CORS filter does nothing on a route without a route entry.
	msgCORSRedirect = "has no effect on a RequestRedirect rule: Envoy's CORS filter acts only on routes that forward, so the redirect carries no CORS headers and a preflight gets the redirect"
)

// serverHeaderChanges returns the fields (".set[0].name", ".remove[1]") of a response header
// filter that change the server header (nil filter: none).
func serverHeaderChanges(h *gwv1.HTTPHeaderFilter) []string {
	if h == nil {
		return nil
	}
	var out []string
	for _, list := range [...]struct {
		field   string
		headers []gwv1.HTTPHeader
	}{{"set", h.Set}, {"add", h.Add}} {
		for j, s := range list.headers {
			if strings.EqualFold(string(s.Name), "server") {
				out = append(out, fmt.Sprintf(".%s[%d].name", list.field, j))
			}
		}
	}
	for j, n := range h.Remove {
		if strings.EqualFold(n, "server") {
			out = append(out, fmt.Sprintf(".remove[%d]", j))
		}
	}
	return out
}

// matchBlock holds a RouteMatch and its path specifier of the kinds most matches have, allocated
// together.
type matchBlock struct {
	m      routev3.RouteMatch
	path   routev3.RouteMatch_Path
	prefix routev3.RouteMatch_Prefix
	sep    routev3.RouteMatch_PathSeparatedPrefix
}

// compileMatch builds an Envoy match, or returns the field (a suffix of the match's path) and
// message of what is invalid.
func compileMatch(m *gwv1.HTTPRouteMatch) (compiledMatch, string, string) {
	b := &matchBlock{}
	out := compiledMatch{m: &b.m}
	pathType, value := gwv1.PathMatchPathPrefix, "/"
	if m.Path != nil {
		if m.Path.Type != nil {
			pathType = *m.Path.Type
		}
		if m.Path.Value != nil {
			value = *m.Path.Value
		}
	}
	switch pathType {
	case gwv1.PathMatchExact:
		if !strings.HasPrefix(value, "/") {
			return out, ".path.value", "must start with /"
		}
		if msg := unreachablePath(value, value); msg != "" {
			return out, ".path.value", msg
		}
		b.path.Path = value
		out.m.PathSpecifier = &b.path
		out.prec.pathRank, out.prec.pathLen = 0, len(value)
	case gwv1.PathMatchPathPrefix:
		if !strings.HasPrefix(value, "/") {
			return out, ".path.value", "must start with /"
		}
		p := strings.TrimRight(value, "/")
		if p != "" { // "" is the prefix "/"
			if msg := unreachablePath(p, value); msg != "" {
				return out, ".path.value", msg
			}
		}
		out.isPfx, out.prefix = true, p
		if p == "" {
			b.prefix.Prefix = "/"
			out.m.PathSpecifier = &b.prefix
		} else {
			b.sep.PathSeparatedPrefix = p
			out.m.PathSpecifier = &b.sep
		}
		out.prec.pathRank, out.prec.pathLen = 2, len(p)+1
	case gwv1.PathMatchRegularExpression:
		if _, err := regexp.Compile(value); err != nil {
			return out, ".path.value", "regular expression does not compile: " + err.Error()
		}
		out.m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: value}}
		out.prec.pathRank, out.prec.pathLen = 1, len(value)
	default:
		return out, ".path.type", "unknown path match type " + string(pathType)
	}
	// Gateway API: of entries with an equivalent name (case-insensitive for headers, exact for
	// query parameters) only the first counts; the others are ignored.
	seen := map[string]bool{}
	for k, h := range m.Headers {
		name := strings.ToLower(string(h.Name))
		if seen[name] {
			continue
		}
		seen[name] = true
		sm, err := stringMatch((*string)(h.Type), h.Value)
		if err != "" {
			return out, fmt.Sprintf(".headers[%d]", k), err
		}
		if !validHeaderName(string(h.Name)) {
			return out, fmt.Sprintf(".headers[%d].name", k), fmt.Sprintf("%q is not a header name", h.Name)
		}
		out.m.Headers = append(out.m.Headers, &routev3.HeaderMatcher{
			Name: strings.ToLower(string(h.Name)), HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}})
	}
	clear(seen)
	for k, q := range m.QueryParams {
		if seen[string(q.Name)] {
			continue
		}
		seen[string(q.Name)] = true
		sm, err := stringMatch((*string)(q.Type), q.Value)
		if err != "" {
			return out, fmt.Sprintf(".queryParams[%d]", k), err
		}
		if q.Name == "" {
			return out, fmt.Sprintf(".queryParams[%d].name", k), "a name is required"
		}
		out.m.QueryParameters = append(out.m.QueryParameters, &routev3.QueryParameterMatcher{
			Name: string(q.Name), QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm}})
	}
	out.prec.headers, out.prec.queries = len(out.m.Headers), len(out.m.QueryParameters)
	if m.Method != nil {
		out.m.Headers = append(out.m.Headers, &routev3.HeaderMatcher{Name: ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: string(*m.Method)}}}})
		out.prec.method = true
	}
	return out, "", ""
}

// stringMatch builds an Exact (default) or RegularExpression string matcher.
func stringMatch(typ *string, value string) (*matcherv3.StringMatcher, string) {
	if typ == nil || *typ == string(gwv1.HeaderMatchExact) {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}}, ""
	}
	if *typ != string(gwv1.HeaderMatchRegularExpression) {
		return nil, "unknown match type " + *typ
	}
	if _, err := regexp.Compile(value); err != nil {
		return nil, "regular expression does not compile: " + err.Error()
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: value}}}, ""
}

func validHeaderName(n string) bool {
	if n == "" {
		return false
	}
	for _, c := range n {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c) {
			return false
		}
	}
	return true
}

// applyFilter records a filter Envoy does natively; it returns the field and message when the
// filter cannot be honoured.
func (t *translation) applyFilter(c *compiledRule, f *gwv1.HTTPRouteFilter) (string, string) {
	switch f.Type {
	case gwv1.HTTPRouteFilterRequestHeaderModifier:
		if f.RequestHeaderModifier == nil {
			return ".requestHeaderModifier", "is required for this filter type"
		}
		add, rm, err := headerMods(f.RequestHeaderModifier)
		if err != "" {
			return ".requestHeaderModifier", err
		}
		c.reqAdd, c.reqRemove = append(c.reqAdd, add...), append(c.reqRemove, rm...)
		c.reqChanges.Remove = append(c.reqChanges.Remove, rm...)
		for _, h := range f.RequestHeaderModifier.Set {
			c.reqChanges.Add = append(c.reqChanges.Add, contract.HeaderAdd{Name: strings.ToLower(string(h.Name)), Value: h.Value})
		}
		for _, h := range f.RequestHeaderModifier.Add {
			c.reqChanges.Add = append(c.reqChanges.Add, contract.HeaderAdd{Name: strings.ToLower(string(h.Name)), Value: h.Value, Append: true})
		}
	case gwv1.HTTPRouteFilterResponseHeaderModifier:
		if f.ResponseHeaderModifier == nil {
			return ".responseHeaderModifier", "is required for this filter type"
		}
		add, rm, err := headerMods(f.ResponseHeaderModifier)
		if err != "" {
			return ".responseHeaderModifier", err
		}
		c.respAdd, c.respRemove = append(c.respAdd, add...), append(c.respRemove, rm...)
	case gwv1.HTTPRouteFilterURLRewrite:
		u := f.URLRewrite
		if u == nil {
			return ".urlRewrite", "is required for this filter type"
		}
		if u.Hostname != nil {
			c.hostRewrite = string(*u.Hostname)
		}
		if p := u.Path; p != nil {
			switch {
			case p.Type == gwv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil:
				c.fullPath = *p.ReplaceFullPath
			case p.Type == gwv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil:
				c.replacePrefix = p.ReplacePrefixMatch
			default:
				return ".urlRewrite.path", "type and its value do not agree"
			}
		}
	case gwv1.HTTPRouteFilterRequestRedirect:
		rd := f.RequestRedirect
		if rd == nil {
			return ".requestRedirect", "is required for this filter type"
		}
		if err := checkRedirect(rd); err != "" {
			return ".requestRedirect", err
		}
		c.redirect = rd
	case gwv1.HTTPRouteFilterCORS:
		if f.CORS == nil {
			return ".cors", "is required for this filter type"
		}
		if c.cors != nil {
			return ".type", "a rule can have one CORS filter only"
		}
		p, fld, err := corsPolicy(f.CORS)
		if err != "" {
			return ".cors" + fld, err
		}
		c.cors = p
	default:
		return ".type", fmt.Sprintf("filter %s is not supported (supported: RequestHeaderModifier, ResponseHeaderModifier, URLRewrite, RequestRedirect, CORS)", f.Type)
	}
	return "", ""
}

// reservedHeaderPrefix starts the headers mcpgate's parts pass each other (contract.HeaderMux,
// which names the targets the mux may reach, contract.HeaderMuxCluster): an HTTPRoute's filters
// may not set, add or remove them. A weighted cluster's x-mcpgate-mux would lose to the route's
// own headers, which Envoy applies after the weighted cluster's.
const reservedHeaderPrefix = "x-mcpgate-"

// headerMods builds a header filter's changes. Envoy refuses a route configuration that adds or
// removes a ":"-prefixed or host header, on requests and on responses alike.
func headerMods(h *gwv1.HTTPHeaderFilter) ([]*corev3.HeaderValueOption, []string, string) {
	var add []*corev3.HeaderValueOption
	check := func(n string) string {
		switch {
		case !validHeaderName(n) || !modifiableHeader(n):
			return fmt.Sprintf("header %q cannot be modified", n)
		case len(n) >= len(reservedHeaderPrefix) && strings.EqualFold(n[:len(reservedHeaderPrefix)], reservedHeaderPrefix):
			return fmt.Sprintf("header %q cannot be modified: the %s headers are mcpgate's own", n, reservedHeaderPrefix)
		}
		return ""
	}
	for _, s := range h.Set {
		if e := check(string(s.Name)); e != "" {
			return nil, nil, e
		}
		add = append(add, headerOption(string(s.Name), s.Value, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
	}
	for _, s := range h.Add {
		if e := check(string(s.Name)); e != "" {
			return nil, nil, e
		}
		add = append(add, headerOption(string(s.Name), s.Value, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD))
	}
	for _, n := range h.Remove {
		if e := check(n); e != "" {
			return nil, nil, e
		}
	}
	return add, h.Remove, ""
}

// modifiableHeader tells whether Envoy lets a route add or remove header n (its
// HeaderUtility::isModifiableHeader: not ":"-prefixed, not host).
func modifiableHeader(n string) bool {
	return !strings.HasPrefix(n, ":") && !strings.EqualFold(n, "host")
}

// headerOption adds a literal header value. Envoy reads header values as format strings: a "%"
// starts a command operator (an unknown one makes Envoy refuse the whole RouteConfiguration, a
// known one such as %REQ(authorization)% copies a request header), so "%" is written "%%".
func headerOption(name, value string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: strings.ToLower(name), Value: strings.ReplaceAll(value, "%", "%%")},
		AppendAction: action}
}

// redirectCode is Envoy's code for a RequestRedirect status code, and whether Envoy can answer it.
func redirectCode(status int) (routev3.RedirectAction_RedirectResponseCode, bool) {
	switch status {
	case 301:
		return routev3.RedirectAction_MOVED_PERMANENTLY, true
	case 302:
		return routev3.RedirectAction_FOUND, true
	case 303:
		return routev3.RedirectAction_SEE_OTHER, true
	case 307:
		return routev3.RedirectAction_TEMPORARY_REDIRECT, true
	case 308:
		return routev3.RedirectAction_PERMANENT_REDIRECT, true
	}
	return 0, false
}

// checkRedirect returns why a RequestRedirect cannot be honoured, or "".
func checkRedirect(rd *gwv1.HTTPRequestRedirectFilter) string {
	if rd.Scheme != nil && *rd.Scheme != "http" && *rd.Scheme != "https" {
		return fmt.Sprintf("scheme %q is not supported (http, https)", *rd.Scheme)
	}
	if rd.Port != nil && (*rd.Port < 1 || *rd.Port > 65535) {
		return fmt.Sprintf("port %d is out of range", *rd.Port)
	}
	if p := rd.Path; p != nil {
		if !(p.Type == gwv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil) &&
			!(p.Type == gwv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil) {
			return "path: type and its value do not agree"
		}
	}
	if rd.StatusCode != nil {
		if _, ok := redirectCode(*rd.StatusCode); !ok {
			return fmt.Sprintf("statusCode %d is not supported (301, 302, 303, 307, 308)", *rd.StatusCode)
		}
	}
	return ""
}

// redirectAction builds a checked RequestRedirect for a listener on listenerPort. The port of
// the Location is as Gateway API derives it: the redirect's port, else the well-known port of its
// scheme, else the listener's port. Envoy writes port_redirect into the Location, and without it
// keeps the request's Host port, unless the hostname changes: so the port is always set, except
// that a new hostname on the well-known port of the scheme goes without (Gateway API: no ":80"
// for http, no ":443" for https). A ReplacePrefixMatch path is set per match (prefixRewrite),
// like URLRewrite's.
func redirectAction(rd *gwv1.HTTPRequestRedirectFilter, listenerPort int32) *routev3.RedirectAction {
	wellKnown := map[string]uint32{"http": 80, "https": 443}
	ra := &routev3.RedirectAction{ResponseCode: routev3.RedirectAction_FOUND}
	scheme, port := "http", uint32(listenerPort) // mcpgate's listeners are HTTP
	if rd.Scheme != nil {
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: *rd.Scheme}
		scheme, port = *rd.Scheme, wellKnown[*rd.Scheme]
	}
	if rd.Port != nil {
		port = uint32(*rd.Port)
	}
	if rd.Hostname == nil || port != wellKnown[scheme] {
		ra.PortRedirect = port
	}
	if rd.Hostname != nil {
		ra.HostRedirect = string(*rd.Hostname)
	}
	if p := rd.Path; p != nil && p.Type == gwv1.FullPathHTTPPathModifier {
		ra.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: *p.ReplaceFullPath}
	}
	if rd.StatusCode != nil {
		ra.ResponseCode, _ = redirectCode(*rd.StatusCode) // checked by checkRedirect
	}
	return ra
}

// resolveBackendRef adds a backendRef to the rule, or records why it is invalid; an invalid
// ref's weight answers 500.
func (t *translation) resolveBackendRef(cr *compiledRoute, c *compiledRule, rule, index int, ref *gwv1.HTTPBackendRef) {
	r := cr.r
	c.hasRefs = true
	weight := int32(1)
	if ref.Weight != nil {
		weight = *ref.Weight
	}
	fail := func(reason, msg string) {
		if cr.refReason == "" {
			cr.refReason = reason
		}
		field := "spec.rules[" + strconv.Itoa(rule) + "].backendRefs[" + strconv.Itoa(index) + "]"
		cr.refMsgs = append(cr.refMsgs, field+": "+msg)
		cr.problems.add(KindHTTPRoute, r.Namespace, r.Name, field, msg)
		if weight > 0 {
			c.invalidWeight += uint32(weight)
		}
	}
	if weight < 0 {
		weight = 0
		fail(string(gwv1.RouteReasonUnsupportedValue), fmt.Sprintf("weight %d must not be negative", *ref.Weight))
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
		c.refs = append(c.refs, ruleRef{tg: tg, weight: uint32(weight)})
	}
}

// muxHeader is the contract.HeaderMux a route to a multiplexed backend adds for the mux,
// replacing a client's: Envoy's router applies route headers after the HTTP filters, so ext_proc
// never sees it, and the mux reads Envoy's.
func muxHeader(tg *target, gateway string) *corev3.HeaderValueOption {
	return headerOption(contract.HeaderMux, tg.mux.header(gateway), corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
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

// ruleUse is a rule of a route on one listener: the policies that apply to it and its Envoy
// routes (both made by buildRule).
type ruleUse struct {
	gi     *gatewayInfo
	li     *listenerInfo
	cr     *compiledRoute
	c      *compiledRule
	hosts  []string
	base   *mergedPolicy   // the policies of the rule itself, without backends (redirects, 500s)
	merges []*mergedPolicy // the policies of each backendRef (c.refs)
	bad    bool            // an invalid policy applies: the rule answers 500
	// baseLimit and limits are the per-route LocalRateLimit (rateLimitOf) of the rule itself
	// (redirects) and of each backendRef; nil without one
	baseLimit *anypb.Any
	limits    []*anypb.Any
	routes    []*routev3.Route // one per match
	oneMerge  [1]*mergedPolicy // room for merges of a rule with one backendRef
}

// addRoutes attaches a route's rules to one listener.
func (t *translation) addRoutes(gi *gatewayInfo, li *listenerInfo, cr *compiledRoute, hosts []string) {
	for i := range cr.rules {
		if c := &cr.rules[i]; len(c.matches) > 0 {
			cr.uses = append(cr.uses, ruleUse{gi: gi, li: li, cr: cr, c: c, hosts: hosts})
		}
	}
}

// mergeRule merges the policies of a rule use: u.base, u.merges and u.bad.
func (t *translation) mergeRule(u *ruleUse) {
	gi, cr, c := u.gi, u.cr, u.c
	u.merges = inPlace(u.oneMerge[:], len(c.refs))
	att := attachment{gateway: gi.key, listener: u.li.key, route: cr.key}
	if c.name != "" {
		att.rule = cr.key + "/" + c.name
	}
	// the policies of every backend; without backends (redirects, 500s), of the rule itself
	if len(c.refs) == 0 || c.redirect != nil {
		u.base = t.merge(att)
		u.baseLimit = t.rateLimitOf(att)
	}
	u.bad = u.base != nil && len(u.base.invalid) > 0
	for i, ref := range c.refs {
		a := att
		a.backend = ref.tg.backend
		u.merges[i] = t.merge(a)
		if rl := t.rateLimitOf(a); rl != nil {
			if u.limits == nil {
				u.limits = make([]*anypb.Any, len(c.refs))
			}
			u.limits[i] = rl
		}
		u.bad = u.bad || u.merges[i] != nil && len(u.merges[i].invalid) > 0
	}
}

// buildRule merges the policies of a rule use and builds its Envoy routes, one per match. It runs
// once the route's uses are all known: u stays where it is.
func (t *translation) buildRule(u *ruleUse) {
	t.mergeRule(u)
	tpl := t.ruleTemplate(u)
	u.routes = inPlace(tpl.block.routes[:], len(u.c.matches))
	for k := range u.c.matches {
		rt := &tpl.block.route // the first route is allocated with the template
		if k > 0 {
			rt = &routev3.Route{}
		}
		tpl.route(rt, u.c, &u.c.matches[k])
		u.routes[k] = rt
	}
}

// routeTemplate is the part of an Envoy route shared by a rule's matches.
type routeTemplate struct {
	block      *ruleBlock
	action     *routev3.Route_Route
	redirect   *routev3.Route_Redirect
	direct     *routev3.Route_DirectResponse
	perFilter  map[string]*anypb.Any
	metadata   *corev3.Metadata // the rule's gateway and route (contract.FromRoute)
	reqAdd     []*corev3.HeaderValueOption
	perMatchRx bool // the action is cloned per match for ReplacePrefixMatch
}

func directResponse(body string) *routev3.Route_DirectResponse {
	return directResponseStatus(500, body)
}

func directResponseStatus(status uint32, body string) *routev3.Route_DirectResponse {
	return &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
		Status: status, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body}}}}
}

// refuseAmbiguousPaths is the first route of every virtual host of a gateway: a path that the
// upstream may read as another path than the one routed gets 400. Path parameters (";", as in
// /private;x): Envoy's prefix and path matches read ";" as part of a segment, so /private;x does
// not match PathPrefix /private and fell through to a broader route (a catch-all under a weaker
// policy, or none), while Java servers (Tomcat, Jetty, Spring) strip the parameters and serve
// /private. Escaped "/", "\" or "." that survive normalization (double-escaped requests): an
// upstream that decodes them and resolves dot segments serves another path. Failing closed costs
// only clients that send such paths, which no MCP transport uses. ext_proc does not run: nothing
// is forwarded. perFilter is the Gateway's directFilters (no rate limit either).
func (x *xdsCommon) refuseAmbiguousPaths(gateway string, perFilter map[string]*anypb.Any) *routev3.Route {
	return &routev3.Route{
		Name:                 RefuseAmbiguousPathsRoute,
		Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ambiguousPathRegex}}},
		Action:               directResponseStatus(400, bodyAmbiguousPath),
		Metadata:             filterMetadata([2][2]string{{contract.FieldGateway, gateway}}),
		TypedPerFilterConfig: perFilter,
	}
}

// ruleTemplate builds what a rule does on one listener: its Envoy action and per-route configs.
func (t *translation) ruleTemplate(u *ruleUse) routeTemplate {
	gi, li, c := u.gi, u.li, u.c
	rb := &ruleBlock{}
	tpl := routeTemplate{block: rb, metadata: rb.md.fill([2][2]string{{contract.FieldGateway, gi.key}, {contract.FieldRoute, c.routeID}})}
	routeID := c.routeID
	switch {
	case u.bad:
		tpl.direct = directResponse(bodyBadPolicy)
		tpl.perFilter = t.directFilters(gi.key)
		return tpl
	case c.failMsg != "":
		tpl.direct = directResponse(c.failMsg)
		tpl.perFilter = t.directFilters(gi.key)
		return tpl
	case c.redirect != nil:
		tpl.redirect = &routev3.Route_Redirect{Redirect: redirectAction(c.redirect, li.l.Port)}
		tpl.perFilter = t.xds.perFilter(t.perRouteConfig(&rb.config, extProcRoute{gateway: gi.key, route: routeID, policy: u.base.name()}), false)
		if u.baseLimit != nil {
			// Envoy's local rate limit filter reads the route's per-filter config whatever its
			// action: a redirect is limited like a forwarded request.
			tpl.perFilter = withFilter(tpl.perFilter, localRateLimitFilterName, u.baseLimit)
		}
		return tpl
	case len(c.refs) == 0:
		tpl.direct = directResponse(bodyNoBackend)
		tpl.perFilter = t.directFilters(gi.key)
		return tpl
	}
	var cbuf [4]*anypb.Any
	configs := cbuf[:len(c.refs)]
	if len(c.refs) > len(cbuf) {
		configs = make([]*anypb.Any, len(c.refs))
	}
	same, allPin := true, true
	bySource, mcp, llm, mux := false, false, false, false
	for i, ref := range c.refs {
		tg := ref.tg
		into := &rb.config // the first config is allocated with the template
		if i > 0 {
			into = nil
		}
		e := extProcRoute{
			mcp: tg.mcp, gateway: gi.key, route: routeID, policy: u.merges[i].name(),
			backend: tg.backend, target: tg.name,
		}
		if tg.mux != nil {
			e.targets, e.mux = tg.mux.names, tg.mux.metadata(gi.key, c)
			mux = true
		}
		configs[i] = t.perRouteConfig(into, e)
		same = same && bytes.Equal(configs[i].Value, configs[0].Value)
		allPin = allPin && tg.pinsSessions()
		bySource = bySource || tg.balancedBySource() // MCP targets only (setMCP)
		mcp = mcp || tg.mcp != ""
		llm = llm || tg.llm
	}
	ab := &rb.action
	ra := &ab.ra
	// Envoy merges the per-route ext_proc configs of the route and of the chosen weighted
	// cluster level by level, grpc_initial_metadata key by key (a key only the route sets
	// stays). So the route carries the config all its clusters share, or none and each cluster
	// its whole own: a plain cluster must not inherit an MCP cluster's x-mcpgate-mcp (ext_proc
	// would wait for a body Envoy never sends it, and skip the rules that read it), policy or
	// target.
	// The stateful session envelope likewise: on the route when every cluster pins sessions, else
	// on the clusters that do (the most specific StatefulSessionPerRoute wins, nothing merges).
	// Either way a cluster carries only what the route does not.
	var routeConfig *anypb.Any
	if same {
		routeConfig = configs[0]
	}
	tpl.perFilter = t.xds.perFilter(routeConfig, allPin)
	// The local rate limit likewise: on the route when every backendRef has the same (or the
	// rule has one backend), else on the weighted clusters that have one. Each config is its own
	// token bucket in Envoy: per route, or per weighted cluster of a route.
	sameLimit := true
	for _, l := range u.limits {
		sameLimit = sameLimit && l == u.limits[0]
	}
	if sameLimit && len(u.limits) > 0 {
		tpl.perFilter = withFilter(tpl.perFilter, localRateLimitFilterName, u.limits[0])
	}
	if len(c.refs) == 1 && c.invalidWeight == 0 {
		tg := c.refs[0].tg
		ab.cluster.Cluster = tg.cluster.Name
		ra.ClusterSpecifier = &ab.cluster
		if tg.hostRewrite != "" {
			ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: tg.hostRewrite}
		}
		if tg.authHeader != "" {
			tpl.reqAdd = []*corev3.HeaderValueOption{headerOption("authorization", tg.authHeader, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}
		}
		if tg.mux != nil {
			tpl.reqAdd = []*corev3.HeaderValueOption{muxHeader(tg, gi.key)}
		}
		if tg.pathRewrite != "" && c.fullPath == "" && c.replacePrefix == nil {
			ra.RegexRewrite = fullPathRewrite(tg.pathRewrite)
		}
	} else {
		wc := &routev3.WeightedCluster{}
		for i, ref := range c.refs {
			cw := &routev3.WeightedCluster_ClusterWeight{Name: ref.tg.cluster.Name, Weight: wrapperspb.UInt32(ref.weight)}
			if ref.tg.hostRewrite != "" {
				cw.HostRewriteSpecifier = &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: ref.tg.hostRewrite}
			}
			if ref.tg.authHeader != "" {
				cw.RequestHeadersToAdd = []*corev3.HeaderValueOption{headerOption("authorization", ref.tg.authHeader, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}
			}
			if ref.tg.mux != nil {
				// Envoy applies a picked weighted cluster's headers with the route's, in the router
				cw.RequestHeadersToAdd = []*corev3.HeaderValueOption{muxHeader(ref.tg, gi.key)}
			}
			var clusterConfig *anypb.Any
			if !same {
				clusterConfig = configs[i]
			}
			cw.TypedPerFilterConfig = t.xds.perFilter(clusterConfig, !allPin && ref.tg.pinsSessions())
			if !sameLimit && u.limits[i] != nil {
				cw.TypedPerFilterConfig = withFilter(cw.TypedPerFilterConfig, localRateLimitFilterName, u.limits[i])
			}
			wc.Clusters = append(wc.Clusters, cw)
		}
		if c.invalidWeight > 0 {
			// It answers 500 and reaches no server: ext_proc has nothing to check, and must not
			// audit the request as a call of the other shares' target (the route's config names it).
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
				Name: invalidBackendCluster, Weight: wrapperspb.UInt32(c.invalidWeight), TypedPerFilterConfig: t.xds.disabledFilters})
			ra.ClusterNotFoundResponseCode = routev3.RouteAction_INTERNAL_SERVER_ERROR
		}
		if bySource || mux {
			// An MCP session lives on one server: pick the cluster with the route's hash (the
			// client's address), as the ring hash then picks its host, not at random per request.
			// A plain cluster beside it is picked the same way (a client stays on it), and
			// balances that client's requests over its hosts (ROUND_ROBIN ignores the hash). The
			// mux's session lives in its id, but its requests must all reach the mux as well.
			wc.RandomValueSpecifier = &routev3.WeightedCluster_UseHashPolicy{UseHashPolicy: wrapperspb.Bool(true)}
			bySource = true
		}
		ra.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	if c.hostRewrite != "" {
		ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: c.hostRewrite}
	}
	if c.fullPath != "" {
		ra.RegexRewrite = fullPathRewrite(c.fullPath)
	}
	if bySource {
		// The hash the ring-hash clusters of MCP targets need; a route to plain clusters only has
		// none (they balance per request).
		ra.HashPolicy = t.xds.hashBySource
	}
	// Envoy's default route timeout (15 s, until the whole answer is in) would cut MCP streams
	// and LLM answers; HCM's stream_idle_timeout (5 min) still bounds silence on LLM routes.
	switch {
	case c.timeout != nil:
		ra.Timeout = c.timeout
	case mcp || llm:
		ra.Timeout = t.xds.noTimeout
	}
	if mcp {
		ra.IdleTimeout = t.xds.mcpIdle
	}
	if c.cors != nil {
		// Only here: Envoy's CORS filter acts on routes with a route entry (it forwards), never on a
		// redirect or a direct response.
		tpl.perFilter = withFilter(tpl.perFilter, corsFilterName, c.cors)
	}
	ab.action.Route = ra
	tpl.action = &ab.action
	tpl.perMatchRx = c.replacePrefix != nil
	return tpl
}

// ruleBlock holds the messages of a rule use's routeTemplate, allocated together: its metadata,
// its route action (unused when it answers without forwarding, which only refused and redirect
// rules do), its first ext_proc config, and its routes when it has one match.
type ruleBlock struct {
	md     metadataBlock
	action actionBlock
	config anypb.Any
	route  routev3.Route
	routes [1]*routev3.Route
}

// actionBlock holds the messages of a route action, allocated together (every route has one).
type actionBlock struct {
	action  routev3.Route_Route
	ra      routev3.RouteAction
	cluster routev3.RouteAction_Cluster // when it routes to one cluster
}

func fullPathRewrite(path string) *matcherv3.RegexMatchAndSubstitute {
	return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/.*$"}, Substitution: path}
}

// prefixRewrite implements ReplacePrefixMatch for a PathPrefix match with Gateway API
// semantics (element-wise prefixes, no doubled or lost slashes).
func prefixRewrite(prefix, replace string) *matcherv3.RegexMatchAndSubstitute {
	rep := strings.TrimRight(replace, "/")
	switch {
	case prefix == "":
		return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/"}, Substitution: rep + "/"}
	case rep == "":
		return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(prefix) + "/*"}, Substitution: "/"}
	}
	return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(prefix)}, Substitution: rep}
}

// route builds the Envoy route of one match in rt, a new Route.
func (tpl *routeTemplate) route(rt *routev3.Route, c *compiledRule, m *compiledMatch) {
	rt.Name = "httproute/" + c.routeID + "/match/" + strconv.Itoa(m.index) // routeID is "NS/NAME/rule/I"
	rt.Match = m.m
	rt.Metadata = tpl.metadata
	rt.TypedPerFilterConfig = tpl.perFilter
	rt.RequestHeadersToAdd = append(append([]*corev3.HeaderValueOption{}, c.reqAdd...), tpl.reqAdd...)
	rt.RequestHeadersToRemove = c.reqRemove
	rt.ResponseHeadersToAdd = c.respAdd
	rt.ResponseHeadersToRemove = c.respRemove
	if len(rt.RequestHeadersToAdd) == 0 {
		rt.RequestHeadersToAdd = nil
	}
	switch {
	case tpl.direct != nil:
		rt.Action = tpl.direct
	case tpl.redirect != nil && c.redirectPrefix() != nil:
		ra := proto.Clone(tpl.redirect.Redirect).(*routev3.RedirectAction)
		ra.PathRewriteSpecifier = &routev3.RedirectAction_RegexRewrite{RegexRewrite: prefixRewrite(m.prefix, *c.redirectPrefix())}
		rt.Action = &routev3.Route_Redirect{Redirect: ra}
	case tpl.redirect != nil:
		rt.Action = tpl.redirect
	case tpl.perMatchRx:
		ra := proto.Clone(tpl.action.Route).(*routev3.RouteAction)
		ra.RegexRewrite = prefixRewrite(m.prefix, *c.replacePrefix)
		rt.Action = &routev3.Route_Route{Route: ra}
	default:
		rt.Action = tpl.action
	}
}
