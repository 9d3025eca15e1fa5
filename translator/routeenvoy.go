// The Envoy routes of a rule on one listener (buildRule): the policies that apply to it are
// merged (mergeRule, policymerge.go), then ruleTemplate builds what the rule's matches share (a
// direct response, a redirect, or a route action to one or weighted clusters, with the per-route
// ext_proc, rate limit, CORS and session configs), and route builds each match's Envoy Route.
// Also the first route of every virtual host, refuseAmbiguousPaths.

package translator

import (
	"bytes"
	"slices"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/mcp"
)

const (
	// mcpIdleTimeout bounds how long an MCP stream (a legacy SSE GET, a Streamable HTTP GET)
	// may stay silent; MCP routes have no overall request timeout.
	mcpIdleTimeout = time.Hour
	bodyNoBackend  = "mcpgate: this route has no valid backend\n"
	bodyBadPolicy  = "mcpgate: the policy of this route is not accepted\n"
	// bodyMCPNotEnforced answers a backendRef under MCP rules that is not MCP (mcpUnenforced).
	bodyMCPNotEnforced = "mcpgate: this route's policy has MCP rules (spec.backend.mcp.authorization), which its backend, not an MCP backend, cannot be held to\n"
	bodyBadRule        = "mcpgate: this route rule is not supported\n"
	// bodyAuthTooLong answers a backendRef to a prefixMode Never backend whose credential makes
	// the resolver's metadata too long (mergeRule).
	bodyAuthTooLong = "mcpgate: the backend credential of this route is too long to pass to the prefixMode Never resolver with the backend's targets\n"
	// bodyAmbiguousPath answers an ambiguous path (RefuseAmbiguousPathsRoute).
	bodyAmbiguousPath = "mcpgate: path parameters (\";\" in the path) and escaped \"/\", \"\\\" or \".\" left after normalization are refused\n"
	// bodyMisdirected answers a misdirected request (MisdirectedRequestRoute).
	bodyMisdirected = "mcpgate: misdirected request: this connection's TLS server name (SNI) is served by another listener than the request's Host; connect again with the Host as the server name\n"
	// ambiguousPathRegex matches a path with ";" in it, or with %2F, %5C or %2E (any hex case)
	// after normalization, which only a double-escaped request still has (normalization
	// unescapes slashes before it decodes escaped unreserved characters, so /a%2%46..%2%46b
	// becomes /a%2F..%2Fb, which an upstream that decodes it serves as /b). Envoy matches
	// safe_regex against the whole path without the query string (route_components.proto,
	// RouteMatch.safe_regex), so these in the query do not match.
	ambiguousPathRegex = ".*(;|%2[fFeE]|%5[cC]).*"
)

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
	auths  []routeAuth     // the credential of each backendRef (c.refs, authOf)
	bad    bool            // an invalid policy applies: the rule answers 500
	// mcpUnenforced: bad because MCP rules of the route's own policies apply to a backendRef
	// that is not MCP (mcpUnenforced)
	mcpUnenforced bool
	// authTooLong: bad because a backendRef's credential makes its prefixMode Never metadata
	// longer than Envoy takes
	authTooLong bool
	// baseLimit and limits are the per-route LocalRateLimit (rateLimitOf) of the rule itself
	// (redirects) and of each backendRef; nil without one
	baseLimit *anypb.Any
	limits    []*anypb.Any
	routes    []*routev3.Route // per match, in order: one, or a bridged rule's (bridgeRoutes)
	oneMerge  [1]*mergedPolicy // room for merges of a rule with one backendRef
	oneAuth   [1]routeAuth     // room for auths of a rule with one backendRef
}

// buildRule merges the policies of a rule use and builds its Envoy routes, one per match, or
// those of a bridged rule (bridgeRoutes). It runs once the route's uses are all known: u stays
// where it is.
func (t *translation) buildRule(u *ruleUse) {
	t.mergeRule(u)
	c := u.c
	tpl := t.ruleTemplate(u, c.refs)
	if u.bridged() {
		t.bridgeRoutes(u, &tpl)
		return
	}
	u.routes = inPlace(tpl.block.routes[:], len(c.matches))
	for k := range c.matches {
		rt := &tpl.block.route // the first route is allocated with the template
		if k > 0 {
			rt = &routev3.Route{}
		}
		tpl.route(rt, c, &c.matches[k])
		u.routes[k] = rt
	}
}

// bridged reports whether the rule use bridges its backend's target (compiledRule.bridge): it
// forwards (no refusal applies).
func (u *ruleUse) bridged() bool {
	return u.c.bridge != nil && !u.bad && u.c.failMsg == ""
}

// Route name suffixes of a bridged rule's routes (bridgeRoutes).
const (
	suffixLegacyStream   = "/sse-stream"
	suffixLegacyMessages = "/sse-messages-"
	suffixBridge         = "/bridge"
)

// bridgeRoutes builds the routes of a bridged rule use. For a Streamable HTTP target, one route
// per match: a match of a path ending in /sse (legacyMatch) to the mux, the others to the
// target (tpl). For an SSE target, for each match M in this order: to the SSE target as any
// rule to it (tpl), M with a GET without Mcp-Session-Id (the legacy stream)
// and M with each legacy session query parameter (the POSTs to the endpoint the stream announces,
// one route per spelling ext_proc reads, mcp.SessionParamNames: Envoy compares names as sent, and
// matches a route's query parameters all together); then M to the mux, which bridges every
// other request (a Streamable HTTP client's) to the target (compiledRule.bridge). The routes of
// one match share its precedence and are registered in this order (registerRoute), so that
// they stay together and in order where the match's one route would be: the matches they add
// do not rank them (precedence), they only split what M takes.
func (t *translation) bridgeRoutes(u *ruleUse, tpl *routeTemplate) {
	c := u.c
	br := t.ruleTemplate(u, []ruleRef{{tg: c.bridge, weight: 1}})
	if c.bridge.mux.bridged() != contract.TransportSSE {
		// a Streamable HTTP target: the matches of paths ending in /sse go to the mux whole
		u.routes = make([]*routev3.Route, len(c.matches))
		for k := range c.matches {
			rt, to := &routev3.Route{}, tpl
			if legacyMatch(c.matches[k]) {
				to = &br
			}
			to.route(rt, c, &c.matches[k])
			if to == &br {
				rt.Name += suffixBridge
			}
			u.routes[k] = rt
		}
		return
	}
	per := bridgeRoutesPerMatch
	u.routes = make([]*routev3.Route, 0, per*len(c.matches))
	for k := range c.matches {
		m := &c.matches[k]
		stream := &routev3.Route{}
		tpl.route(stream, c, m)
		stream.Name += suffixLegacyStream
		stream.Match = proto.Clone(m.m).(*routev3.RouteMatch)
		stream.Match.Headers = append(stream.Match.Headers,
			&routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "GET"}}}},
			// absent: Envoy's HeaderUtility::matchHeaders matches a missing header with present_match
			// true and invert_match (route_components.proto, HeaderMatcher.present_match)
			&routev3.HeaderMatcher{Name: sessionHeader, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true})
		u.routes = append(u.routes, stream)
		for _, p := range mcp.SessionParamNames {
			post := &routev3.Route{}
			tpl.route(post, c, m)
			post.Name += suffixLegacyMessages + p
			post.Match = proto.Clone(m.m).(*routev3.RouteMatch)
			post.Match.QueryParameters = append(post.Match.QueryParameters, &routev3.QueryParameterMatcher{
				Name: p, QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}})
			u.routes = append(u.routes, post)
		}
		bridge := &routev3.Route{}
		br.route(bridge, c, m)
		bridge.Name += suffixBridge
		u.routes = append(u.routes, bridge)
	}
}

// bridgeRoutesPerMatch is how many routes bridgeRoutes builds per match.
const bridgeRoutesPerMatch = 1 + len(mcp.SessionParamNames) + 1

// mergeRule merges the policies of a rule use: u.base, u.merges and u.bad.
func (t *translation) mergeRule(u *ruleUse) {
	gi, cr, c := u.gi, u.cr, u.c
	u.merges = inPlace(u.oneMerge[:], len(c.refs))
	u.auths = inPlace(u.oneAuth[:], len(c.refs))
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
		u.auths[i] = t.authOf(a, ref.tg)
		if h := u.auths[i].header; h != "" && ref.tg.mux != nil {
			// the credential rides to ext_proc in the metadata too (metadata), whose length
			// Envoy bounds: the rule answers 500 rather than have Envoy refuse the RouteConfiguration
			if len(ref.tg.mux.metadata(gi.key, c, h)) > contract.MaxMetadataValue {
				u.bad, u.authTooLong = true, true
				w := FieldError{Kind: KindHTTPRoute, Namespace: cr.r.Namespace, Name: cr.r.Name,
					Field: "spec.rules[" + strconv.Itoa(c.index) + "].backendRefs[" + strconv.Itoa(ref.index) + "]", Message: msgAuthTooLong}
				if !slices.Contains(cr.warnings, w) { // once, not per listener
					cr.warnings = append(cr.warnings, w)
				}
			}
		}
		if ref.tg.mcp == "" && t.mcpUnenforced(a, cr, c, ref) {
			u.bad, u.mcpUnenforced = true, true
		}
		if rl := t.rateLimitOf(a); rl != nil {
			if u.limits == nil {
				u.limits = make([]*anypb.Any, len(c.refs))
			}
			u.limits[i] = rl
		}
		u.bad = u.bad || u.merges[i] != nil && len(u.merges[i].invalid) > 0
	}
}

// msgAuthTooLong is the warning of a backendRef that answers 500 with bodyAuthTooLong.
var msgAuthTooLong = "answers 500: the backend auth credential of this backendRef (key or secretRef) and the targets of its " +
	"prefixMode Never backend ride to ext_proc in one metadata value, over the " + strconv.Itoa(contract.MaxMetadataValue) + " bytes Envoy takes"

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
	// clusterHeaders: the rule's request header changes are on each weighted cluster, before its
	// credential, not on the route (ruleTemplate)
	clusterHeaders bool
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

// ruleTemplate builds what a rule does on one listener, sending to refs (the rule's, or its
// bridge's): its Envoy action and per-route configs.
func (t *translation) ruleTemplate(u *ruleUse, refs []ruleRef) routeTemplate {
	gi, li, c := u.gi, u.li, u.c
	rb := &ruleBlock{}
	tpl := routeTemplate{block: rb, metadata: rb.md.fill([2][2]string{{contract.FieldGateway, gi.key}, {contract.FieldRoute, c.routeID}})}
	routeID := c.routeID
	switch {
	case u.bad:
		tpl.direct = directResponse(bodyBadPolicy)
		switch {
		case u.mcpUnenforced:
			tpl.direct = directResponse(bodyMCPNotEnforced)
		case u.authTooLong:
			tpl.direct = directResponse(bodyAuthTooLong)
		}
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
	case len(refs) == 0:
		tpl.direct = directResponse(bodyNoBackend)
		tpl.perFilter = t.directFilters(gi.key)
		return tpl
	}
	var cbuf [4]*anypb.Any
	var configs []*anypb.Any
	if len(refs) <= len(cbuf) {
		configs = cbuf[:len(refs)]
	} else { // cbuf[:len(refs)] would panic: a rule may have any number of backendRefs
		configs = make([]*anypb.Any, len(refs))
	}
	same, allPin := true, true
	bySource, mcp, llm, mux := false, false, false, false
	for i, ref := range refs {
		tg := ref.tg
		into := &rb.config // the first config is allocated with the template
		if i > 0 {
			into = nil
		}
		e := extProcRoute{
			mcp: tg.mcp, gateway: gi.key, route: routeID, policy: u.merges[i].name(),
			backend: tg.backend, target: tg.name, passthrough: u.auths[i].passthrough,
		}
		if tg.mux != nil {
			e.targets, e.mux, e.bridge = tg.mux.names, tg.mux.metadata(gi.key, c, u.auths[i].header), tg.mux.bridged()
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
	if len(refs) == 1 && c.invalidWeight == 0 {
		tg := refs[0].tg
		ab.cluster.Cluster = tg.cluster.Name
		ra.ClusterSpecifier = &ab.cluster
		if tg.hostRewrite != "" {
			ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: tg.hostRewrite}
		}
		if tg.mux != nil {
			tpl.reqAdd = []*corev3.HeaderValueOption{muxHeader(tg, gi.key)}
		}
		if h := u.auths[0].header; h != "" {
			// to a multiplexed backend too: the mux passes the client's Authorization on to its targets
			tpl.reqAdd = append(tpl.reqAdd, authHeader(h))
		}
		if tg.pathRewrite != "" && c.fullPath == "" && c.replacePrefix == nil {
			ra.RegexRewrite = fullPathRewrite(tg.pathRewrite)
		}
	} else {
		wc := &routev3.WeightedCluster{}
		// Envoy applies the picked weighted cluster's request headers first, then the route's
		// (WeightedClusterEntry::finalizeRequestHeaders): a rule's RequestHeaderModifier on the
		// route would come after a cluster's credential, and its removing or setting
		// authorization override the key, which it does not with one backend (the key comes after
		// it there). When a cluster carries a credential, each cluster gets the rule's changes
		// before its own headers, as a route to one backend has them.
		tpl.clusterHeaders = slices.ContainsFunc(u.auths, func(a routeAuth) bool { return a.header != "" }) &&
			(len(c.reqAdd) > 0 || len(c.reqRemove) > 0)
		for i, ref := range refs {
			cw := &routev3.WeightedCluster_ClusterWeight{Name: ref.tg.cluster.Name, Weight: wrapperspb.UInt32(ref.weight)}
			if ref.tg.hostRewrite != "" {
				cw.HostRewriteSpecifier = &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: ref.tg.hostRewrite}
			}
			if tpl.clusterHeaders {
				cw.RequestHeadersToAdd = slices.Clip(c.reqAdd)
				cw.RequestHeadersToRemove = c.reqRemove
			}
			if ref.tg.mux != nil {
				// Envoy applies a picked weighted cluster's headers with the route's, in the router
				cw.RequestHeadersToAdd = append(cw.RequestHeadersToAdd, muxHeader(ref.tg, gi.key))
			}
			if h := u.auths[i].header; h != "" {
				cw.RequestHeadersToAdd = append(cw.RequestHeadersToAdd, authHeader(h))
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
				Name: invalidBackendCluster, Weight: wrapperspb.UInt32(uint32(c.invalidWeight)), TypedPerFilterConfig: t.xds.disabledFilters})
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

// route builds the Envoy route of one match in rt, a new Route.
func (tpl *routeTemplate) route(rt *routev3.Route, c *compiledRule, m *compiledMatch) {
	rt.Name = "httproute/" + c.routeID + "/match/" + strconv.Itoa(m.index) // routeID is "NS/NAME/rule/I"
	rt.Match = m.m
	rt.Metadata = tpl.metadata
	rt.TypedPerFilterConfig = tpl.perFilter
	rt.RequestHeadersToAdd = append(append([]*corev3.HeaderValueOption{}, c.reqAdd...), tpl.reqAdd...)
	rt.RequestHeadersToRemove = c.reqRemove
	if tpl.clusterHeaders { // on each weighted cluster instead
		rt.RequestHeadersToAdd, rt.RequestHeadersToRemove = tpl.reqAdd, nil
	}
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

// muxHeader is the contract.HeaderMux a route to a multiplexed backend adds for the mux,
// replacing a client's: Envoy's router applies route headers after the HTTP filters, so ext_proc
// never sees it, and the mux reads Envoy's.
func muxHeader(tg *target, gateway string) *corev3.HeaderValueOption {
	return headerOption(contract.HeaderMux, tg.mux.header(gateway), corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
}

// authHeader is the Authorization header a backendRef's credential (key, secretRef: routeAuth)
// sets, replacing the client's. Printed configuration redacts it (Redacted).
func authHeader(v string) *corev3.HeaderValueOption {
	return headerOption("authorization", v, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
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

// misdirectedRequest is the route of a Gateway's 421 virtual hosts (chainVirtualHosts): every
// request that passed the refusal of ambiguous paths gets 421 Misdirected Request (RFC 9110
// 15.5.20), which tells an HTTP/2 client that reused a connection for another name (coalescing)
// to retry on a connection of its own. ext_proc does not run; perFilter is the Gateway's
// directFilters (no rate limit either).
func (x *xdsCommon) misdirectedRequest(gateway string, perFilter map[string]*anypb.Any) *routev3.Route {
	return &routev3.Route{
		Name:                 MisdirectedRequestRoute,
		Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action:               directResponseStatus(421, bodyMisdirected),
		Metadata:             filterMetadata([2][2]string{{contract.FieldGateway, gateway}}),
		TypedPerFilterConfig: perFilter,
	}
}
