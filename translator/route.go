// HTTPRoute compilation, the first route stage (compileRoutes): each route's rules are compiled
// once for all listeners into a compiledRoute (its matches into Envoy RouteMatches with their
// precedence, its filters via applyFilter in routefilters.go, its backendRefs via
// resolveBackendRef in routerefs.go), with the refusals and warnings its status will say.
// Attaching to listeners is in routeattach.go, the Envoy routes in routeenvoy.go.

package translator

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/contract"
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
	if c := compareNsName(a.ns, a.name, b.ns, b.name); c != 0 {
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
	index  int // its index in the rule's backendRefs
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
	invalidWeight         uint64 // at most MaxUint32 once compileRule checked the rule's weights
	// btlsRefused are the targets of backendRefs refused for their BackendTLSPolicy: the
	// policy's ancestors are the Gateways of the rule all the same
	btlsRefused []*target
	hasRefs     bool
	// bridge, when the rule sends to one backend only (one ref, no invalid share) and its
	// target is bridged (an SSE target; a Streamable HTTP target, when a match's path ends in
	// /sse: legacyMatch), is that target's bridge (target.bridge): the rule's routes split
	// between the target and the mux (bridgeRoutes).
	bridge *target
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
	// badHosts are the refusals ("field: message") of the route's spec.hostnames: a route with
	// one is not accepted (attachParent)
	badHosts []string
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

// compileRoute resolves a route's matches, filters and backendRefs once for all listeners, into
// cr.
func (t *translation) compileRoute(cr *compiledRoute, ri *routeInfo) {
	r := ri.r
	cr.r, cr.info, cr.key = r, ri, ri.key
	cr.rules = inPlace(cr.oneRule[:], len(r.Spec.Rules))
	cr.attached, cr.uses = cr.oneListener[:0], cr.oneUse[:0]
	for i, h := range r.Spec.Hostnames {
		if msg := routeHostnameProblem(string(h)); msg != "" {
			f := "spec.hostnames[" + strconv.Itoa(i) + "]"
			cr.badHosts = append(cr.badHosts, f+": "+msg)
			cr.problems.add(KindHTTPRoute, r.Namespace, r.Name, f, msg)
		}
	}
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
	// Fields mcpgate does not apply: a warning each, rather than silent acceptance.
	if tm := rule.Timeouts; tm != nil && tm.BackendRequest != nil {
		warnings.add(KindHTTPRoute, r.Namespace, r.Name, field()+".timeouts.backendRequest", msgNotApplied+"; timeouts.request bounds the whole request")
	}
	if rule.Retry != nil {
		warnings.add(KindHTTPRoute, r.Namespace, r.Name, field()+".retry", msgNotApplied+"; a failed request is not retried")
	}
	if rule.SessionPersistence != nil {
		warnings.add(KindHTTPRoute, r.Namespace, r.Name, field()+".sessionPersistence", msgNotApplied+"; requests are balanced without it")
	}
	for k := range rule.BackendRefs {
		t.resolveBackendRef(cr, c, i, k, &rule.BackendRefs[k])
	}
	// Envoy refuses weighted clusters whose weights sum over MaxUint32 (weighted_cluster_specifier.cc,
	// "The sum of weights of all weighted clusters of route ... exceeds"), with the whole
	// RouteConfiguration. Each weight is at most 1,000,000 (resolveBackendRef), so only a rule
	// with thousands of backendRefs gets there (the CRD allows 16; files are not checked).
	sum := c.invalidWeight
	for _, ref := range c.refs {
		sum += uint64(ref.weight)
	}
	if sum > math.MaxUint32 {
		invalid(field()+".backendRefs", fmt.Sprintf("the weights sum to %d, over the %d Envoy takes", sum, uint64(math.MaxUint32)))
		c.refs, c.invalidWeight = c.refs[:0], 0
	}
	for _, ref := range c.refs {
		if ref.tg.mux != nil {
			if msg := ref.tg.mux.metadataTooLong(c); msg != "" {
				invalid(field()+".filters", msg)
				break
			}
		}
	}
	switch {
	case len(c.refs) == 1 && c.invalidWeight == 0:
		switch tg := c.refs[0].tg; {
		case tg.mcp == contract.TransportSSE:
			c.bridge = tg.bridge
		case slices.ContainsFunc(c.matches, legacyMatch):
			c.bridge = tg.legacyBridge()
		}
	default:
		for _, ref := range c.refs {
			// (mcp first: a Streamable HTTP target's bridge is made concurrently, legacyBridge)
			if ref.tg.mcp == contract.TransportSSE && ref.tg.bridge != nil {
				warnings.add(KindHTTPRoute, r.Namespace, r.Name, fmt.Sprintf("%s.backendRefs[%d]", field(), ref.index),
					fmt.Sprintf(msgNotBridged, ref.tg.backend, ref.tg.name))
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
	// msgNotApplied: an HTTPRoute rule field mcpgate does not implement (Gateway API extended
	// features: timeouts.backendRequest, retry, sessionPersistence).
	msgNotApplied = "is not applied, mcpgate does not implement it"
	// msgServerHeader: the connection manager sets the server header of every answer after the
	// route's header changes (server_header_transformation OVERWRITE, server_name "envoy").
	msgServerHeader = `has no effect: Envoy sets the server header of every response to "envoy" after the route's header changes`
	// msgStreamTimeout (with the timeout): Envoy's route timeout bounds a whole request, answer
	// included, so it ends the streams of an MCP route.
	msgStreamTimeout = "%s bounds each whole request, its answer included: the SSE streams of this MCP route (legacy SSE GETs, Streamable HTTP GETs, POSTs answered as a stream) end after it"
	// msgCORSRedirect: Envoy's CORS filter does nothing on a route without a route entry.
	msgCORSRedirect = "has no effect on a RequestRedirect rule: Envoy's CORS filter acts only on routes that forward, so the redirect carries no CORS headers and a preflight gets the redirect"
	// msgNotBridged (with the backend and its target): a weighted cluster is picked after the
	// route, so a rule that weighs a bridged SSE target with other backendRefs cannot send the
	// target's Streamable HTTP clients to the mux.
	msgNotBridged = "AgentgatewayBackend %s's SSE target %s is not bridged in a rule that weighs it with other backendRefs: every request of its share goes to the target as it is, so Streamable HTTP clients reach it only if it serves Streamable HTTP itself; send to the backend alone in a rule of its own to bridge them"
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
		// Gateway API's HTTPMethod is an enum: the API server refuses other methods, and
		// Envoy would match FETCH or "get" as written (an exact :method match)
		if *m.Method == "" || unsupported(*m.Method, httpMethods...) != "" {
			return out, ".method", field.NotSupported(nil, string(*m.Method), httpMethods).ErrorBody()
		}
		out.m.Headers = append(out.m.Headers, &routev3.HeaderMatcher{Name: ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: string(*m.Method)}}}})
		out.prec.method = true
	}
	return out, "", ""
}

// httpMethods are the values of Gateway API's HTTPMethod enum.
var httpMethods = []gwv1.HTTPMethod{gwv1.HTTPMethodGet, gwv1.HTTPMethodHead, gwv1.HTTPMethodPost, gwv1.HTTPMethodPut,
	gwv1.HTTPMethodDelete, gwv1.HTTPMethodConnect, gwv1.HTTPMethodOptions, gwv1.HTTPMethodTrace, gwv1.HTTPMethodPatch}

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

// legacyMatch reports whether m's path ends in /sse (Exact or PathPrefix): the path HTTP+SSE
// clients use, which agentgateway serves as HTTP+SSE whatever its target speaks. Such a match of
// a rule sending to a single Streamable HTTP target alone goes to the mux, which bridges those
// clients and passes Streamable HTTP requests through (bridgeRoutes).
func legacyMatch(m compiledMatch) bool {
	p := m.prefix // a PathPrefix match's, without its trailing /
	if !m.isPfx {
		p = strings.TrimSuffix(m.m.GetPath(), "/") // an Exact match's ("" for the others)
	}
	return strings.HasSuffix(p, "/sse")
}
