// MCP AgentgatewayBackends (translateMCP): static targets and selectors (Service ports by their
// MCP appProtocol), and a backend with several targets multiplexed through mcpgate's mux
// (muxBackend: the route header and ext_proc metadata that name its targets).

package translator

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/contract"
)

func (t *translation) translateMCP(bi *backendInfo) (field, msg, note string) {
	b := bi.b
	targets := b.Spec.MCP.Targets
	if len(targets) == 0 {
		return "spec.mcp.targets", "at least one target is required", ""
	}
	m := b.Spec.MCP
	for _, e := range [...]struct{ field, msg string }{
		{"spec.mcp.sessionRouting", unsupported(m.SessionRouting, v1alpha1.SessionRoutingStateful, v1alpha1.SessionRoutingStateless)},
		{"spec.mcp.failureMode", unsupported(m.FailureMode, v1alpha1.FailureModeFailClosed, v1alpha1.FailureModeFailOpen)},
		{"spec.mcp.prefixMode", unsupported(m.PrefixMode, v1alpha1.PrefixModeConditional, v1alpha1.PrefixModeAlways, v1alpha1.PrefixModeNever)},
	} {
		if e.msg != "" {
			return e.field, e.msg, ""
		}
	}
	if policiesTLS(b.Spec.Policies) != nil {
		return "spec.policies.tls", "not applied to an MCP backend: set the TLS of each static target in spec.mcp.targets[].static.policies.tls", ""
	}
	targetNames := make(map[string]int, len(targets))
	for i := range targets {
		tg := &targets[i]
		f := func(suffix string) string { return "spec.mcp.targets[" + strconv.Itoa(i) + "]" + suffix } // built only for errors
		if tg.Name == "" {
			return f(".name"), "a name is required", ""
		}
		// The CRD keys targets by name (a list-map), so the API server refuses two of one name;
		// files meet no API server.
		if j, dup := targetNames[string(tg.Name)]; dup {
			return f(".name"), fmt.Sprintf("%q is the name of spec.mcp.targets[%d] too: each target needs a name of its own", tg.Name, j), ""
		}
		targetNames[string(tg.Name)] = i
		if (tg.Static == nil) == (tg.Selector == nil) {
			return f(""), "exactly one of static and selector must be set", ""
		}
		if tg.Static != nil {
			st := tg.Static
			if field, err := checkHostPort(st.Host, st.Port); err != "" {
				return f(".static." + field), err, ""
			}
			if st.Path != "" {
				if msg := targetPathProblem(st.Path); msg != "" {
					return f(".static.path"), msg, ""
				}
			}
			if msg := unsupported(st.Protocol, v1alpha1.MCPProtocolSSE, v1alpha1.MCPProtocolStreamableHTTP); msg != "" {
				return f(".static.protocol"), msg, ""
			}
			if field, err := checkTLS(targetTLS(st)); err != "" {
				return f(".static.policies.tls" + field), err, ""
			}
		}
	}
	// every target, a selector's Service ports each one (mcpTarget), in spec order
	var all []mcpTarget
	var empty []int // the targets whose selector finds nothing
	for i := range targets {
		spec := &targets[i]
		cname := backendClusterPrefix + bi.key + "/" + string(spec.Name)
		if spec.Static == nil {
			found, err := t.selectorTargets(bi, spec, cname, i)
			if err != "" {
				return "spec.mcp.targets[" + strconv.Itoa(i) + "].selector", err, ""
			}
			if len(found) == 0 {
				// Left out while others remain: a Service not created yet takes no other target down.
				empty = append(empty, i)
				continue
			}
			all = append(all, found...)
			continue
		}
		tg, tls, ignored := t.staticMCPTarget(bi, i, cname, spec)
		tg.backend = bi.key
		mt := mcpTarget{tg: tg, index: i}
		if tls != nil {
			mt.note = "reached " + tls.describe()
		}
		if ignored != "" {
			mt.note = strings.TrimPrefix(mt.note+"; "+ignored, "; ")
		}
		all = append(all, mt)
	}
	var leftOut []string // the condition's word on each target left out
	for _, i := range empty {
		field := "spec.mcp.targets[" + strconv.Itoa(i) + "].selector"
		msg := "selects no Service port with appProtocol " + AppProtocolMCP + " or " + AppProtocolMCPSSE
		if len(all) == 0 {
			return field, msg, ""
		}
		msg += ": target " + string(targets[i].Name) + " is left out"
		bi.warnings.add(KindAgentgatewayBackend, b.Namespace, b.Name, field, msg)
		leftOut = append(leftOut, field+": "+msg)
	}
	withLeftOut := func(note string) string {
		return strings.Join(append([]string{note}, leftOut...), "; ")
	}
	if why, field := t.notMultiplexed(m, all); why != "" {
		return "", "", withLeftOut(t.firstTargetOnly(bi, all, field, why))
	}
	if len(all) == 1 && m.PrefixMode != v1alpha1.PrefixModeAlways {
		tg := all[0].tg
		bi.target = tg
		note = "MCP target " + tg.name + ": " + tg.mcp + " at " + tg.path
		if all[0].note != "" {
			note += "; " + all[0].note
		}
		if tg.mcp == contract.TransportSSE {
			note += "; " + t.bridge(bi, all[0])
		} else if why, _ := unfit(m, all[0]); why == "" {
			// HTTP+SSE clients of a Streamable HTTP target: only the matches of paths ending in
			// /sse take the bridge (legacyMatch), made when one does (target.legacyBridge), so it
			// costs nothing elsewhere and says nothing
			tg.legacy = m
		}
		return "", "", withLeftOut(note)
	}
	tg := t.muxTarget(bi, all)
	// The header names every target: Envoy refuses a longer value than it takes with the whole
	// RouteConfiguration of every port that routes to the backend (the longest Gateway key
	// assumed, as metadataTooLong does).
	if msg := headerValueProblem(tg.mux.header(strings.Repeat("g", maxGatewayKey))); msg != "" {
		return "spec.mcp.targets", fmt.Sprintf("the %s header that names the %d targets to mcpgate's mux %s: split them over several backends",
			contract.HeaderMux, len(all), msg), ""
	}
	bi.target = tg
	parts := make([]string, len(all))
	for i, mt := range all {
		parts[i] = mt.tg.name + ": " + mt.tg.mcp + " at " + mt.tg.path
		if mt.note != "" {
			parts[i] += " " + mt.note
		}
	}
	names := "tools and prompts TARGET_name, resources TARGET+uri"
	if m.PrefixMode == v1alpha1.PrefixModeNever {
		names = "tools and prompts unprefixed, a name several targets serve left out; resources TARGET+uri"
	}
	note = fmt.Sprintf("MCP targets multiplexed by mcpgate's mux (%s): %s", names, strings.Join(parts, "; "))
	return "", "", withLeftOut(note)
}

// mcpTarget is one effective target of an MCP backend: a static target, or one Service port a
// selector found.
type mcpTarget struct {
	tg    *target
	index int    // its spec.mcp.targets index
	note  string // how it is reached, when worth saying (TLS)
	// service is the Service port a selector found it at ("Service NS/NAME port P of
	// spec.mcp.targets[I].selector"); "" for a static target
	service string
}

// from says where the target comes from, for messages: "spec.mcp.targets[1]", or the Service
// port a selector found.
func (mt *mcpTarget) from() string {
	if mt.service != "" {
		return mt.service
	}
	return "spec.mcp.targets[" + strconv.Itoa(mt.index) + "]"
}

// describe names the target and where it comes from, for messages: "t (spec.mcp.targets[1])".
func (mt *mcpTarget) describe() string { return mt.tg.name + " (" + mt.from() + ")" }

// targetPathProblem says why p cannot be an MCP target's path, or "": the mux and the bridge
// send their requests to it as a URL's path, and the status shows it, so it is an absolute path
// without a query, a fragment, spaces or control characters.
func targetPathProblem(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return "must start with /"
	case strings.ContainsAny(p, "?#"):
		return fmt.Sprintf("%q: a target path has no query (?) or fragment (#)", p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == 0x7f {
			return fmt.Sprintf("%q: a space or control character (byte %d) is not allowed in a target path (percent-encode it)", p, i)
		}
	}
	return ""
}

// staticMCPTarget builds the target of a checked static MCP target, spec.mcp.targets[i] of bi: a
// Service port's EDS cluster when its host names one with EndpointSlices (serviceOfHost), else a
// host's; over TLS as tls says (nil: plaintext). A BackendTLSPolicy of the Service port its host
// names applies to either (staticBackendTLS: an ExternalName Service or one without
// EndpointSlices is no way around it) and wins over the target's own policies.tls, which is
// then ignored with a warning (ignored, "field: why", also for the backend's condition): the
// Service owner's policy says how its Service is reached, and one not accepted fails closed,
// never overridden into plaintext or unverified TLS.
func (t *translation) staticMCPTarget(bi *backendInfo, i int, cname string, spec *v1alpha1.McpTargetSelector) (tg *target, tls *upstreamTLS, ignored string) {
	st := spec.Static
	tr := transportOf(st.Protocol)
	path := st.Path
	if path == "" {
		path = defaultMCPPath(tr)
	}
	tls = tlsFor(st.Host, st.Port, targetTLS(st))
	svc, p := t.serviceOfHost(st.Host, st.Port)
	var bp *btlsPolicy
	if p != nil {
		bp, _ = t.btlsOf(svc, p.Port)
	}
	if bp != nil && targetTLS(st) != nil {
		b := bi.b
		w := fmt.Sprintf("not applied: BackendTLSPolicy %s applies to Service %s port %d, which the host names, and takes precedence over the target's own TLS",
			keyString(bp.p.Namespace, bp.p.Name), keyString(svc.Namespace, svc.Name), p.Port)
		if bp.tls == nil {
			w += " (the policy is not accepted: the target connects nowhere, never plaintext or unverified)"
		}
		field := "spec.mcp.targets[" + strconv.Itoa(i) + "].static.policies.tls"
		bi.warnings.add(KindAgentgatewayBackend, b.Namespace, b.Name, field, w)
		ignored = field + ": " + w
	}
	switch {
	case p != nil && t.serviceHasEndpoints(svc):
		tg = t.serviceCluster(cname, svc, p)
		if tg.btls != nil {
			// the port's BackendTLSPolicy wins over the target's own TLS and the TLS a port 443 implies
			tls = tg.btls.tls
		} else {
			if tls != nil {
				tls.h2 = isH2C(p)
			}
			t.xds.withTLS(tg, tls)
		}
	case bp != nil:
		tg, tls = t.staticBackendTLS(cname, st, svc, p)
	default:
		tg = t.xds.addressTarget(cname, st.Host, st.Port, tls)
	}
	tg.setMCP(tr, string(spec.Name), path)
	return tg, tls, ignored
}

// serviceHasEndpoints reports whether a static target naming svc gets its EDS cluster: a
// Service that is not ExternalName, with at least one EndpointSlice among the inputs (see
// serviceOfHost).
func (t *translation) serviceHasEndpoints(svc *corev1.Service) bool {
	return svc.Spec.Type != corev1.ServiceTypeExternalName && len(t.slices[key(svc.Namespace, svc.Name)]) > 0
}

// staticBackendTLS builds the target of a static MCP target whose host names Service port p of
// svc, reached by address (an ExternalName Service: its externalName; a Service without
// EndpointSlices: the host), to which a BackendTLSPolicy applies: over the policy's TLS (SNI,
// names, CA; ALPN h2 for appProtocol kubernetes.io/h2c), the Host header rewritten to the host
// it connects to as for any address target over TLS (upstreamTLS.hostHeader: a server reached
// by name serves that name), or, when the policy is not accepted, a cluster without endpoints
// that connects nowhere (503), never plaintext. The port is noted for the policy's ancestors.
func (t *translation) staticBackendTLS(cname string, st *v1alpha1.McpTarget, svc *corev1.Service, p *corev1.ServicePort) (*target, *upstreamTLS) {
	bp, pk := t.btlsOf(svc, p.Port)
	var tg *target
	var u *upstreamTLS
	if bp.tls == nil {
		tg = &target{cluster: t.xds.edsCluster(cname), cla: buildLoadAssignment(cname, nil)}
	} else {
		host := st.Host
		if ext := strings.TrimSuffix(svc.Spec.ExternalName, "."); svc.Spec.Type == corev1.ServiceTypeExternalName && ext != "" {
			host = ext
		}
		c := *bp.tls
		u = &c
		u.host, u.port, u.h2 = host, st.Port, isH2C(p)
		tg = t.xds.addressTarget(cname, host, st.Port, u)
		if u.h2 {
			tg.cluster.TypedExtensionProtocolOptions = t.xds.upstreamH2C
		}
	}
	tg.btls, tg.btlsPort = bp, &pk
	return tg, u
}

// notMultiplexed says why an MCP backend's targets, all of them, cannot go behind the mux
// ("" when they can, or when there is one and prefixMode does not ask for prefixes), and the
// field at the root of it. The mux speaks each target's transport (Streamable HTTP or HTTP+SSE,
// contract.MuxTarget.Protocol) and routes each call by its name's prefix (prefixMode Never: by
// the target ext_proc resolved the bare name to): so each name must be unique and free of the
// separators ("_" of tool and prompt names, "+" of resource URIs, "," of the target list
// ext_proc gets).
func (t *translation) notMultiplexed(m *v1alpha1.MCPBackend, all []mcpTarget) (why, field string) {
	if len(all) < 2 && m.PrefixMode != v1alpha1.PrefixModeAlways {
		return "", ""
	}
	seen := map[string]int{} // name -> index in all
	for k, mt := range all {
		f := "spec.mcp.targets[" + strconv.Itoa(mt.index) + "]"
		if why, field := unfit(m, mt); why != "" {
			return why, field
		}
		if j, dup := seen[mt.tg.name]; dup {
			return fmt.Sprintf("two targets are named %s (%s and %s): a prefix must name one", mt.tg.name, all[j].from(), mt.from()), f
		}
		seen[mt.tg.name] = k
	}
	return "", ""
}

// unfit says why a target does not fit the mux (contract.MuxTarget.Check, which the mux applies
// too), and the field at the root of it; "" when it fits.
func unfit(m *v1alpha1.MCPBackend, mt mcpTarget) (why, field string) {
	err := muxTargetOf(mt.tg).Check()
	if err == nil {
		if msg := targetPathProblem(mt.tg.path); msg != "" {
			err = errors.New("path " + msg)
		}
	}
	if err == nil {
		return "", ""
	}
	f := "spec.mcp.targets[" + strconv.Itoa(mt.index) + "]"
	why = "target " + mt.describe() + " does not fit the mux: " + err.Error()
	switch badName := strings.ContainsAny(mt.tg.name, contract.MuxSeparators); {
	case m.Targets[mt.index].Static == nil:
		// a Service port the selector found: its name and path come from the Service
		return why + " (a selected Service's name and path: its annotations " + AnnotationMCPTargetName +
			" and " + AnnotationMCPPath + ")", f + ".selector"
	case badName:
		return why, f + ".name"
	default:
		return why, f + ".static.path"
	}
}

// muxTargetOf is the contract.MuxTarget of an MCP target: its name, cluster, path and, for an
// SSE target, its transport.
func muxTargetOf(tg *target) contract.MuxTarget {
	mt := contract.MuxTarget{Name: tg.name, Cluster: tg.cluster.Name, Path: tg.path}
	if tg.mcp == contract.TransportSSE {
		mt.Protocol = contract.TransportSSE
	}
	return mt
}

// firstTargetOnly routes an MCP backend to its first target, as before the mux, warns that the
// others are not routed and why, and returns the backend's note.
func (t *translation) firstTargetOnly(bi *backendInfo, all []mcpTarget, field, why string) string {
	b := bi.b
	first := all[0]
	bi.target = first.tg
	note := "MCP target " + first.tg.name + ": " + first.tg.mcp + " at " + first.tg.path
	if first.note != "" {
		note += "; " + first.note
	}
	var rest []string
	for _, o := range all[1:] {
		rest = append(rest, o.describe())
	}
	w := fmt.Sprintf("not multiplexed: %s; only the first target, %s, is routed; not routed: %s", why, first.describe(), strings.Join(rest, ", "))
	if len(rest) == 0 { // prefixMode Always, one target
		field = "spec.mcp.prefixMode"
		w = fmt.Sprintf("Always is not applied: %s; the target %s is routed as it is, its names unprefixed", why, first.tg.name)
	}
	bi.warnings.add(KindAgentgatewayBackend, b.Namespace, b.Name, field, w)
	return note + "; " + field + ": " + w
}

// muxTarget is the target of a multiplexed MCP backend: routes to it go to the mux
// (contract.MuxCluster, a bootstrap cluster: this target's cluster is never emitted, its
// targets' clusters are), which reaches each target through the Gateway's mux upstream
// listener. It balances nothing (one local mux), so it hashes nothing and pins no session.
func (t *translation) muxTarget(bi *backendInfo, all []mcpTarget) *target {
	mx := newMuxBackend(bi.key, bi.b.Spec.MCP, all)
	names := make([]string, len(all))
	for i, mt := range all {
		names[i] = mt.tg.name
	}
	mx.names = strings.Join(names, ",")
	return &target{cluster: &clusterv3.Cluster{Name: contract.MuxCluster}, backend: bi.key, mcp: contract.TransportStreamableHTTP, mux: mx}
}

// newMuxBackend is the muxBackend of an MCP backend's targets, without names.
func newMuxBackend(key string, m *v1alpha1.MCPBackend, all []mcpTarget) *muxBackend {
	mx := &muxBackend{spec: contract.Mux{Backend: key, PrefixMode: string(m.PrefixMode), FailureMode: string(m.FailureMode)}}
	if mx.spec.PrefixMode == "" {
		mx.spec.PrefixMode = string(v1alpha1.PrefixModeConditional)
	}
	if mx.spec.FailureMode == "" {
		mx.spec.FailureMode = contract.FailClosed
	}
	for _, mt := range all {
		mx.targets = append(mx.targets, mt.tg)
		mx.spec.Targets = append(mx.spec.Targets, muxTargetOf(mt.tg))
	}
	return mx
}

// bridge makes the single SSE target of an MCP backend reachable by Streamable HTTP clients
// through the mux (contract.Mux.Bridge): the target's bridge is the mux's target, whose routes
// the rules that send to this backend alone add after their legacy routes to the target
// (compiledRule.bridge, bridgeRoutes). It returns what the backend's note says of it. A target whose name or
// path the mux cannot take is not bridged (warned).
func (t *translation) bridge(bi *backendInfo, mt mcpTarget) string {
	tg := mt.tg
	if why, field := unfit(bi.b.Spec.MCP, mt); why != "" {
		w := "not bridged: " + why + "; Streamable HTTP clients reach the SSE target " + tg.name + " directly, as HTTP+SSE clients do"
		bi.warnings.add(KindAgentgatewayBackend, bi.b.Namespace, bi.b.Name, field, w)
		return field + ": " + w
	}
	tg.bridge = newBridge(bi.key, bi.b.Spec.MCP, tg)
	return "SSE target " + tg.name + ": HTTP+SSE clients pass through to it, Streamable HTTP clients bridged by mcpgate's mux" +
		" (in the rules that send to this backend alone)"
}

// newBridge returns the mux's target that bridges tg, the single target of backend key of spec
// m (contract.Mux.Bridge): an SSE target's Streamable HTTP clients (bridge), a Streamable HTTP
// target's HTTP+SSE clients (target.legacyBridge).
func newBridge(key string, m *v1alpha1.MCPBackend, tg *target) *target {
	mx := newMuxBackend(key, m, []mcpTarget{{tg: tg}})
	mx.spec.Bridge = true
	return &target{cluster: &clusterv3.Cluster{Name: contract.MuxCluster}, backend: key, mcp: contract.TransportStreamableHTTP,
		name: tg.name, path: tg.path, mux: mx}
}

// muxBackend is what a multiplexed backend's routes need.
type muxBackend struct {
	spec    contract.Mux // without Gateway, which each route's Gateway fills in (header)
	targets []*target    // its targets, in spec order: their clusters are emitted
	names   string       // the targets' names joined by "," (contract.MetadataTargets); "" for a bridge
}

// bridged is the transport of a bridged backend's target (contract.MetadataBridge), or "".
func (mx *muxBackend) bridged() string {
	if !mx.spec.Bridge {
		return ""
	}
	if p := mx.spec.Targets[0].Protocol; p != "" {
		return p
	}
	return contract.TransportStreamableHTTP
}

// metadata returns the contract.MetadataMux value of the backend's routes on Gateway gw: the
// header's JSON under prefixMode Never, where ext_proc resolves each call's target, with the
// request header changes Envoy's router applies to the call after ext_proc
// (contract.Mux.RequestHeaders), which the resolver's lists must bring the targets too: those of
// the route's rule, then the Authorization the backendRef's credential sets (auth, the
// routeAuth's header; "" for none), which the route (or weighted cluster) adds after them.
// "" (no key) otherwise, where the prefix names it. Only there: the JSON grows with the targets
// and rides on every ext_proc stream of the route, and its presence tells ext_proc the names are
// bare. Printed configuration redacts the credential (redactMux).
func (mx *muxBackend) metadata(gw string, c *compiledRule, auth string) string {
	if mx.spec.PrefixMode != contract.PrefixModeNever || mx.spec.Bridge {
		return ""
	}
	spec := mx.spec
	changes := c.reqChanges
	if auth != "" {
		changes.Add = append(slices.Clip(changes.Add), contract.HeaderAdd{Name: "authorization", Value: auth})
	}
	if len(changes.Remove) > 0 || len(changes.Add) > 0 {
		spec.RequestHeaders = &changes
	}
	spec.Host = c.hostRewrite
	return muxJSON(spec, gw)
}

// maxGatewayKey is the longest Gateway key, NAMESPACE/NAME (63 + 1 + 253 bytes).
const maxGatewayKey = 317

// metadataTooLong says why the Never metadata of rule c's route to this backend would be longer
// than Envoy takes (contract.MaxMetadataValue) on any Gateway, or "". The backendRef's
// credential, known once the route attaches, is not in it: mergeRule checks the metadata with it.
func (mx *muxBackend) metadataTooLong(c *compiledRule) string {
	n := len(mx.metadata("", c, "")) + maxGatewayKey + 16 // JSON escapes of the key, at most
	if mx.spec.PrefixMode != contract.PrefixModeNever || mx.spec.Bridge || n <= contract.MaxMetadataValue {
		return ""
	}
	return fmt.Sprintf("the targets and request header changes of a prefixMode Never backend ride to ext_proc in one metadata value of %d bytes or more, over the %d Envoy takes: set fewer or shorter headers on this rule", n, contract.MaxMetadataValue)
}

// header returns the contract.HeaderMux value of the backend's routes on Gateway gw: the Mux as
// compact JSON.
func (mx *muxBackend) header(gw string) string {
	return muxJSON(mx.spec, gw)
}

// muxJSON returns spec on Gateway gw as compact JSON.
func muxJSON(spec contract.Mux, gw string) string {
	spec.Gateway = gw
	b, err := json.Marshal(spec)
	if err != nil {
		panic("translator: marshal the mux header: " + err.Error()) // strings only: it cannot fail
	}
	return string(b)
}

// serviceOfHost returns the Service a static target's host names by its cluster DNS name
// (NAME.NS.svc or NAME.NS.svc.DOMAIN, DOMAIN being Options.ClusterDomain, in any letter case,
// with or without the final dot; another domain is not recognised, it keeps the DNS name) and the
// Service port of that number, when both are among the inputs (Kubernetes: every Service and
// slice; standalone: those in the files). staticMCPTarget reaches it through its EndpointSlices
// when it has some and is not ExternalName (serviceHasEndpoints): a Service name resolves to its
// ClusterIP, behind which kube-proxy picks a pod per connection: Envoy would see one host, and
// the requests of a session, spread over connections, would reach pods that do not hold it. Its
// EndpointSlices instead give Envoy every ready pod, so the ring hash and the session envelope
// keep a session on its pod. An ExternalName Service and a Service without slices (the lab's, in
// its files) keep the DNS name, under the port's BackendTLSPolicy if one applies.
func (t *translation) serviceOfHost(host string, port int32) (*corev1.Service, *corev1.ServicePort) {
	ns, name, ok := t.opts.ServiceOfHost(host)
	if !ok {
		return nil, nil
	}
	svc := t.services[key(ns, name)]
	if svc == nil {
		return nil, nil
	}
	for i := range svc.Spec.Ports {
		if p := &svc.Spec.Ports[i]; p.Port == port && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			return svc, p
		}
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		// a DNS alias: any port of its externalName is reached through it, declared or not
		return svc, &corev1.ServicePort{Port: port, Protocol: corev1.ProtocolTCP}
	}
	return nil, nil
}

// transportOf is the transport of a protocol that translateMCP accepted (empty: StreamableHTTP).
func transportOf(p v1alpha1.MCPProtocol) string {
	if p == v1alpha1.MCPProtocolSSE {
		return contract.TransportSSE
	}
	return contract.TransportStreamableHTTP
}

func defaultMCPPath(transport string) string {
	if transport == contract.TransportSSE {
		return "/sse"
	}
	return "/mcp"
}

// mcpTransportOfPort returns the MCP transport a Service port's appProtocol declares, or "".
// IsMCPPort reports whether a Service port is an MCP server's by its appProtocol (AppProtocolMCP,
// AppProtocolMCPSSE, or kgateway's former names), which selector targets find.
func IsMCPPort(p *corev1.ServicePort) bool { return mcpTransportOfPort(p) != "" }

func mcpTransportOfPort(p *corev1.ServicePort) string {
	if p.AppProtocol == nil {
		return ""
	}
	switch *p.AppProtocol {
	case AppProtocolMCP, legacyAppProtocolMCP:
		return contract.TransportStreamableHTTP
	case AppProtocolMCPSSE, legacyAppProtocolMCPSSE:
		return contract.TransportSSE
	}
	return ""
}

// selectorTargets finds the MCP Service ports a selector target selects, sorted by namespace,
// Service and port.
func (t *translation) selectorTargets(bi *backendInfo, tg *v1alpha1.McpTargetSelector, prefix string, index int) ([]mcpTarget, string) {
	b := bi.b
	sel := tg.Selector
	namespaces := []string{b.Namespace}
	if sel.Namespaces != nil {
		s, err := metav1.LabelSelectorAsSelector(sel.Namespaces)
		if err != nil {
			return nil, "namespaces: " + err.Error()
		}
		namespaces = namespaces[:0]
		seen := map[string]bool{}
		for ns := range t.servicesInNS {
			if !seen[ns] && s.Matches(labels.Set(t.namespaceLabels(ns))) {
				namespaces = append(namespaces, ns)
				seen[ns] = true
			}
		}
		sort.Strings(namespaces)
	}
	svcSel := labels.Everything()
	if sel.Services != nil {
		s, err := metav1.LabelSelectorAsSelector(sel.Services)
		if err != nil {
			return nil, "services: " + err.Error()
		}
		svcSel = s
	}
	var out []mcpTarget
	for _, ns := range namespaces {
		for _, svc := range t.servicesInNS[ns] {
			if !svcSel.Matches(labels.Set(svc.Labels)) {
				continue
			}
			for i := range svc.Spec.Ports {
				p := &svc.Spec.Ports[i]
				if mcpTransportOfPort(p) == "" {
					continue
				}
				name := prefix + "/" + svc.Namespace + "/" + svc.Name + "/" + strconv.Itoa(int(p.Port))
				tgt := t.serviceTarget(name, svc, p)
				tgt.backend = bi.key
				out = append(out, mcpTarget{tg: tgt, index: index,
					service: fmt.Sprintf("Service %s/%s port %d of spec.mcp.targets[%d].selector", svc.Namespace, svc.Name, p.Port, index)})
			}
		}
	}
	return out, ""
}
