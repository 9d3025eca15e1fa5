package translator

import (
	"slices"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/contract"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// gatewayBuild collects one Gateway's resources while routes attach.
type gatewayBuild struct {
	// vhosts: port -> domain -> listener -> virtual host. Several listeners on one port may
	// produce the same domain; the most specific listener covering it keeps it (virtualHosts).
	vhosts map[int32]map[string]map[*listenerInfo]*vhostBuild
	// what the routes use, in registration order, a name possibly several times (byName)
	clusters []named[*clusterv3.Cluster]
	clas     []named[*endpointv3.ClusterLoadAssignment]
	policies []named[*policyv1.Policy]
	// muxed are the targets of the multiplexed backends the routes use (muxUpstreamRoutes)
	muxed []named[*target]
}

// named is a resource and its name.
type named[T any] struct {
	name string
	v    T
}

// byName sorts the resources by name and keeps one of each name: the last registered, as a map
// by name would (the resources of one name are one object, unless the cluster names of two
// targets collide).
func byName[T any](list []named[T]) []T {
	if len(list) == 0 {
		return nil
	}
	slices.SortStableFunc(list, func(a, b named[T]) int { return strings.Compare(a.name, b.name) })
	out := make([]T, 0, len(list))
	for i, r := range list {
		if i+1 == len(list) || list[i+1].name != r.name {
			out = append(out, r.v)
		}
	}
	return out
}

type vhostBuild struct {
	name, domain string
	li           *listenerInfo
	routes       []rankedRoute
	sortedRoutes []*routev3.Route // routes in precedence order, once built
}

type rankedRoute struct {
	route *routev3.Route
	prec  *precedence
}

// newGatewayBuild sizes the lists for about n clusters and policies.
func newGatewayBuild(n int) *gatewayBuild {
	return &gatewayBuild{
		vhosts:   map[int32]map[string]map[*listenerInfo]*vhostBuild{},
		clusters: make([]named[*clusterv3.Cluster], 0, n),
		policies: make([]named[*policyv1.Policy], 0, n),
	}
}

// vhost returns the virtual host of a listener and hostname ("" = any).
func (gb *gatewayBuild) vhost(li *listenerInfo, host string) *vhostBuild {
	port := li.l.Port
	byDomain := gb.vhosts[port]
	if byDomain == nil {
		byDomain = map[string]map[*listenerInfo]*vhostBuild{}
		gb.vhosts[port] = byDomain
	}
	domain := hostnameOrAny(host)
	byListener := byDomain[domain]
	if byListener == nil {
		byListener = map[*listenerInfo]*vhostBuild{}
		byDomain[domain] = byListener
	}
	vb := byListener[li]
	if vb == nil {
		vb = &vhostBuild{name: li.gw.key + "/" + string(li.l.Name) + "/" + domain, domain: domain, li: li}
		byListener[li] = vb
	}
	return vb
}

func (vb *vhostBuild) add(r *routev3.Route, p *precedence) {
	vb.routes = append(vb.routes, rankedRoute{r, p})
}

// addTarget records the cluster (and endpoints) a route's target uses; for a multiplexed
// backend, its targets' clusters, which the mux reaches through the mux upstream listener.
func (gb *gatewayBuild) addTarget(tg *target) {
	if tg.mux != nil {
		for _, m := range tg.mux.targets {
			gb.addTarget(m)
			gb.muxed = append(gb.muxed, named[*target]{m.cluster.Name, m})
		}
		return
	}
	gb.clusters = append(gb.clusters, named[*clusterv3.Cluster]{tg.cluster.Name, tg.cluster})
	if tg.cla != nil {
		gb.clas = append(gb.clas, named[*endpointv3.ClusterLoadAssignment]{tg.cla.ClusterName, tg.cla})
	}
}

// addPolicy records a merged policy (nil: none).
func (gb *gatewayBuild) addPolicy(m *mergedPolicy) {
	if m != nil && m.policy != nil {
		gb.policies = append(gb.policies, named[*policyv1.Policy]{m.policy.Name, m.policy})
	}
}

// hostSpecificity ranks listener hostnames ("" = any) and virtual host domains ("*" = any):
// exact names first, then wildcards by length, then any (Gateway API hostname precedence).
func hostSpecificity(h string) int {
	switch {
	case h == "" || h == "*":
		return 0
	case strings.HasPrefix(h, "*."):
		return 1 + len(h)
	}
	return 1 << 20
}

// covers reports whether a listener hostname or domain w ("" or "*" = any) takes in the domain
// d: d itself, a host under wildcard w, or a narrower wildcard.
func covers(w, d string) bool {
	switch {
	case w == "" || w == "*" || w == d:
		return true
	case d == "*":
		return false
	case strings.HasPrefix(w, "*."):
		return hostMatches(w, d)
	}
	return false
}

// virtualHosts builds the virtual hosts of one port of a Gateway; each starts with first (the
// refusal of path parameters).
//
// Listener isolation: a request belongs to the most specific listener whose hostname matches
// it, and only that listener's routes serve it. So a domain is served by the virtual host of
// the most specific listener that covers it (routes of broader listeners for that domain are
// left out), and every listener with a hostname has a virtual host for it, empty if no route
// attached, so that its requests never reach a broader listener's routes.
//
// Hostname precedence within a listener: a route whose hostname is more specific comes first,
// but the routes of broader hostnames (a wildcard, or none) still serve what it does not
// match, so a virtual host also holds the routes of the listener's virtual hosts whose domain
// covers its own, after its own routes, most specific domain first.
//
// owners[i] is the listener whose virtual host out[i] is.
func (gb *gatewayBuild) virtualHosts(listeners []*listenerInfo, port int32, first *routev3.Route) (out []*routev3.VirtualHost, owners []*listenerInfo) {
	var onPort []*listenerInfo
	for _, li := range listeners {
		if li.ok && li.l.Port == port {
			onPort = append(onPort, li)
			if li.hostname != "" {
				gb.vhost(li, li.hostname)
			}
		}
	}
	var kept []*vhostBuild
	byDomain := gb.vhosts[port]
	for domain, byListener := range byDomain {
		if vb := byListener[ownerOf(onPort, domain)]; vb != nil {
			kept = append(kept, vb)
		}
	}
	slices.SortFunc(kept, func(a, b *vhostBuild) int { return strings.Compare(a.name, b.name) })
	out = make([]*routev3.VirtualHost, 0, len(kept))
	owners = make([]*listenerInfo, 0, len(kept))
	for _, vb := range kept {
		own := vb.sorted()
		routes := make([]*routev3.Route, 0, 1+len(own))
		routes = append(append(routes, first), own...)
		var seen map[*routev3.Route]bool
		for _, d := range widerDomains(vb.domain) {
			w := byDomain[d][vb.li]
			if w == nil {
				continue
			}
			if seen == nil {
				seen = make(map[*routev3.Route]bool, len(routes))
				for _, r := range routes {
					seen[r] = true
				}
			}
			for _, r := range w.sorted() {
				if !seen[r] { // a route with both hostnames is there already
					seen[r] = true
					routes = append(routes, r)
				}
			}
		}
		out = append(out, &routev3.VirtualHost{Name: vb.name, Domains: []string{vb.domain}, Routes: routes})
		owners = append(owners, vb.li)
	}
	return out, owners
}

// chainVirtualHosts are the virtual hosts of the RouteConfiguration of li's filter chain on an
// HTTPS port whose listeners (each with a chain) are chains, out of the port's virtual hosts vhs
// and their owners (virtualHosts): li's own, and for the hostname of each other listener ("*"
// for one without), a virtual host answering 421 (misdirected, after first, the refusal of path
// parameters). Gateway API's misdirected requests: the SNI chose li's chain, and a Host that
// another listener matches more specifically than li (or at all, when li does not match it)
// belongs to that listener's connections. Envoy picks the virtual host by the most specific
// domain (exact, then the longest wildcard suffix, then "*"), as a Host's listener is the most
// specific one matching it: li's hostname is among li's domains, so a Host whose listener is li
// finds a domain of li at least as specific as any other listener's hostname (every domain of
// li is one li owns), a Host another listener owns finds that listener's hostname or a domain
// more specific, and a Host no listener matches finds none: Envoy's 404. A domain already in
// the list is not added again (a guard: Envoy refuses a domain twice in a RouteConfiguration;
// listeners sharing a hostname on a port are all refused, markConflicts, so it does not happen).
func chainVirtualHosts(li *listenerInfo, chains []*listenerInfo, vhs []*routev3.VirtualHost, owners []*listenerInfo,
	first, misdirected *routev3.Route) []*routev3.VirtualHost {
	var out []*routev3.VirtualHost
	domains := map[string]bool{}
	for i, vh := range vhs {
		if owners[i] == li {
			out = append(out, vh)
			domains[vh.Domains[0]] = true
		}
	}
	for _, o := range chains {
		d := hostnameOrAny(o.hostname)
		if o == li || domains[d] {
			continue
		}
		domains[d] = true
		out = append(out, &routev3.VirtualHost{Name: o.gw.key + "/" + string(o.l.Name) + "/" + d + misdirectedSuffix,
			Domains: []string{d}, Routes: []*routev3.Route{first, misdirected}})
	}
	slices.SortFunc(out, func(a, b *routev3.VirtualHost) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// widerDomains lists the domains that cover the domain d, most specific first: the wildcards
// of its parent domains ("a.b.example" and "*.b.example" are covered by "*.example"; a
// wildcard does not cover its apex), then "*".
func widerDomains(d string) []string {
	if d == "*" {
		return nil
	}
	var out []string
	for s := strings.TrimPrefix(d, "*."); ; {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			break
		}
		s = s[i+1:]
		out = append(out, "*."+s)
	}
	return append(out, "*")
}

// ownerOf returns the most specific listener (the first on ties) whose hostname covers domain,
// or nil.
func ownerOf(listeners []*listenerInfo, domain string) *listenerInfo {
	var owner *listenerInfo
	for _, li := range listeners {
		if covers(li.hostname, domain) && (owner == nil || hostSpecificity(li.hostname) > hostSpecificity(owner.hostname)) {
			owner = li
		}
	}
	return owner
}

// sorted returns the virtual host's own routes in Gateway API precedence order.
func (vb *vhostBuild) sorted() []*routev3.Route {
	if vb.sortedRoutes == nil {
		slices.SortStableFunc(vb.routes, func(a, b rankedRoute) int { return a.prec.compare(b.prec) })
		vb.sortedRoutes = make([]*routev3.Route, len(vb.routes))
		for i, r := range vb.routes {
			vb.sortedRoutes[i] = r.route
		}
	}
	return vb.sortedRoutes
}

// buildGateway assembles the sorted xDS resources of a Gateway.
func (t *translation) buildGateway(gi *gatewayInfo) *GatewayConfig {
	gb := gi.build
	cfg := &GatewayConfig{}
	ports := map[int32]bool{}
	for _, li := range gi.listeners {
		if li.ok {
			ports[li.l.Port] = true
		}
	}
	portList := make([]int32, 0, len(ports))
	for p := range ports {
		portList = append(portList, p)
	}
	sort.Slice(portList, func(i, j int) bool { return portList[i] < portList[j] })
	refuse := t.xds.refuseAmbiguousPaths(gi.key, t.directFilters(gi.key))
	// A Gateway-level rate limit is one bucket per port: its LocalRateLimit is on the port's
	// RouteConfiguration, the least specific level Envoy reads, and on none of its routes.
	var portLimit map[string]*anypb.Any
	if rl := t.gatewayRateLimit(gi.key); rl != nil {
		portLimit = map[string]*anypb.Any{localRateLimitFilterName: rl}
	}
	var muxRoutes *routev3.RouteConfiguration
	routeConfig := func(name string, vhs []*routev3.VirtualHost) *routev3.RouteConfiguration {
		return &routev3.RouteConfiguration{Name: name, IgnorePortInHostMatching: true, VirtualHosts: vhs,
			InternalOnlyHeaders: []string{originalPathHeader}, TypedPerFilterConfig: portLimit}
	}
	concurrently(
		func() {
			var misdirected *routev3.Route
			for _, port := range portList {
				name := listenerName(gi, port)
				vhs, owners := gb.virtualHosts(gi.listeners, port, refuse)
				chains := httpsListeners(gi, port)
				if len(chains) == 0 {
					cfg.Listeners = append(cfg.Listeners, t.xds.listener(name, port))
					cfg.Routes = append(cfg.Routes, routeConfig(name, vhs))
					continue
				}
				// An HTTPS port: a RouteConfiguration per filter chain (docs/design.md, HTTPS
				// listeners: misdirected requests).
				if misdirected == nil {
					misdirected = t.xds.misdirectedRequest(gi.key, t.directFilters(gi.key))
				}
				cfg.Listeners = append(cfg.Listeners, t.xds.tlsListener(name, port, chains))
				for _, li := range chains {
					cfg.Routes = append(cfg.Routes, routeConfig(chainRoutesName(name, li), chainVirtualHosts(li, chains, vhs, owners, refuse, misdirected)))
				}
			}
		},
		func() {
			cfg.Clusters = byName(gb.clusters)
			muxRoutes = t.xds.muxUpstreamRoutes(gi.key, byName(gb.muxed))
		},
		func() { cfg.Endpoints = byName(gb.clas) },
		func() { cfg.Policies = byName(gb.policies); cfg.Secrets = gatewaySecrets(gi) })
	t.xds.withBackendCert(gi.backendCert, cfg)
	cfg.Routes = append(cfg.Routes, muxRoutes)
	slices.SortFunc(cfg.Routes, func(a, b *routev3.RouteConfiguration) int { return strings.Compare(a.Name, b.Name) })
	return cfg
}

// muxUpstreamRoutes is a Gateway's contract.MuxUpstreamRoutes, the routes of the bootstrap's mux
// upstream listener (always sent, possibly empty: the listener waits for it): one per target of
// a multiplexed backend, chosen by the contract.HeaderMuxCluster the mux sets (removed before
// the target sees it), and sent there as the target's own route would send it: with the ring
// hash's source address, the stateful session envelope of a target that pins sessions, the Host
// of a TLS target, no timeout but the MCP idle one. The mux sends the target's path; nothing is
// rewritten. Nothing else reaches the listener (a Unix socket): no ext_proc, the front hop's
// route decided.
func (x *xdsCommon) muxUpstreamRoutes(gateway string, targets []*target) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: contract.MuxUpstreamRoutes, InternalOnlyHeaders: []string{originalPathHeader}}
	vh := &routev3.VirtualHost{Name: contract.MuxUpstreamRoutes, Domains: []string{"*"}}
	md := filterMetadata([2][2]string{{contract.FieldGateway, gateway}})
	for _, tg := range targets {
		ra := &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: tg.cluster.Name},
			Timeout:          x.noTimeout,
			IdleTimeout:      x.mcpIdle,
		}
		if tg.hostRewrite != "" {
			ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: tg.hostRewrite}
		}
		if tg.balancedBySource() {
			ra.HashPolicy = x.hashBySource
		}
		vh.Routes = append(vh.Routes, &routev3.Route{
			Name: contract.MuxUpstreamRoutes + "/" + tg.cluster.Name,
			Match: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{{Name: contract.HeaderMuxCluster, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
					StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: tg.cluster.Name}}}}},
			},
			Action:                 &routev3.Route_Route{Route: ra},
			Metadata:               md,
			RequestHeadersToRemove: []string{contract.HeaderMuxCluster},
			TypedPerFilterConfig:   x.perFilter(nil, tg.pinsSessions()),
		})
	}
	rc.VirtualHosts = []*routev3.VirtualHost{vh}
	return rc
}
