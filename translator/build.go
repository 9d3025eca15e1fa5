package translator

import (
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// gatewayBuild collects one Gateway's resources while routes attach.
type gatewayBuild struct {
	// vhosts: port -> domain -> listener -> virtual host. Several listeners on one port may
	// produce the same domain; the most specific listener hostname keeps it (buildGateway).
	vhosts   map[int32]map[string]map[*listenerInfo]*vhostBuild
	clusters map[string]*clusterv3.Cluster
	clas     map[string]*endpointv3.ClusterLoadAssignment
	policies map[string]*policyv1.Policy
}

type vhostBuild struct {
	name, domain string
	li           *listenerInfo
	routes       []*routev3.Route
	precs        []*precedence
}

// newGatewayBuild sizes the maps for about n clusters and policies.
func newGatewayBuild(n int) *gatewayBuild {
	return &gatewayBuild{
		vhosts:   map[int32]map[string]map[*listenerInfo]*vhostBuild{},
		clusters: make(map[string]*clusterv3.Cluster, n),
		clas:     map[string]*endpointv3.ClusterLoadAssignment{},
		policies: make(map[string]*policyv1.Policy, n),
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
	vb.routes = append(vb.routes, r)
	vb.precs = append(vb.precs, p)
}

func (gb *gatewayBuild) addTarget(tg *target) {
	gb.clusters[tg.cluster.Name] = tg.cluster
	if tg.cla != nil {
		gb.clas[tg.cla.ClusterName] = tg.cla
	}
}

// addPolicy records a merged policy and returns its name ("" for none).
func (gb *gatewayBuild) addPolicy(m *mergedPolicy) string {
	if m == nil || m.policy == nil {
		return ""
	}
	gb.policies[m.policy.Name] = m.policy
	return m.policy.Name
}

// listenerSpecificity ranks listener hostnames: exact names first, then wildcards by length,
// then no hostname.
func listenerSpecificity(h string) int {
	switch {
	case h == "":
		return 0
	case strings.HasPrefix(h, "*."):
		return 1 + len(h)
	}
	return 1 << 20
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
	for _, port := range portList {
		name := listenerName(gi, port)
		cfg.Listeners = append(cfg.Listeners, t.xds.listener(name, port))
		rc := &routev3.RouteConfiguration{Name: name, IgnorePortInHostMatching: true}
		var vhs []*vhostBuild
		for _, byListener := range gb.vhosts[port] {
			var best *vhostBuild
			for li, vb := range byListener {
				if best == nil || listenerSpecificity(li.hostname) > listenerSpecificity(best.li.hostname) ||
					(listenerSpecificity(li.hostname) == listenerSpecificity(best.li.hostname) && li.index < best.li.index) {
					best = vb
				}
			}
			vhs = append(vhs, best)
		}
		sort.Slice(vhs, func(i, j int) bool { return vhs[i].name < vhs[j].name })
		for _, vb := range vhs {
			order := make([]int, len(vb.routes))
			for i := range order {
				order[i] = i
			}
			sort.SliceStable(order, func(i, j int) bool { return vb.precs[order[i]].before(vb.precs[order[j]]) })
			routes := make([]*routev3.Route, len(order))
			for i, k := range order {
				routes[i] = vb.routes[k]
			}
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: vb.name, Domains: []string{vb.domain}, Routes: routes})
		}
		cfg.Routes = append(cfg.Routes, rc)
	}
	for _, c := range gb.clusters {
		cfg.Clusters = append(cfg.Clusters, c)
	}
	sort.Slice(cfg.Clusters, func(i, j int) bool { return cfg.Clusters[i].Name < cfg.Clusters[j].Name })
	for _, c := range gb.clas {
		cfg.Endpoints = append(cfg.Endpoints, c)
	}
	sort.Slice(cfg.Endpoints, func(i, j int) bool { return cfg.Endpoints[i].ClusterName < cfg.Endpoints[j].ClusterName })
	for _, p := range gb.policies {
		cfg.Policies = append(cfg.Policies, p)
	}
	sort.Slice(cfg.Policies, func(i, j int) bool { return cfg.Policies[i].Name < cfg.Policies[j].Name })
	return cfg
}
