package translator

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/contract"
)

// Service port appProtocols that mark an MCP server, and the annotations that name its target
// and path (agentgateway's, with the legacy kgateway ones).
const (
	AppProtocolMCP          = "agentgateway.dev/mcp"
	AppProtocolMCPSSE       = "agentgateway.dev/mcp-sse"
	legacyAppProtocolMCP    = "kgateway.dev/mcp"
	legacyAppProtocolMCPSSE = "kgateway.dev/mcp-sse"
	AnnotationMCPPath       = "agentgateway.dev/mcp-path"
	AnnotationMCPTargetName = "agentgateway.dev/mcp-target-name"
	legacyAnnotationMCPPath = "kgateway.dev/mcp-path"
)

// Service port appProtocols of Gateway API's backend protocol selection (GEP-1911).
const (
	// AppProtocolH2C is HTTP/2 over cleartext (prior knowledge): Envoy speaks HTTP/2 to the port.
	AppProtocolH2C = "kubernetes.io/h2c"
	// AppProtocolWS and AppProtocolWSS are WebSocket (over TLS): not supported, a backendRef to
	// such a port is refused with reason UnsupportedProtocol.
	AppProtocolWS  = "kubernetes.io/ws"
	AppProtocolWSS = "kubernetes.io/wss"
)

const (
	openAIHost = "api.openai.com"
	httpsPort  = 443
)

// target is where a backendRef sends traffic: one cluster, and what the route must add.
type target struct {
	cluster *clusterv3.Cluster
	cla     *endpointv3.ClusterLoadAssignment // EDS clusters only
	backend string                            // "NS/NAME" of the AgentgatewayBackend; "" for a Service
	mcp     string                            // MCP transport; "" = not MCP
	name    string                            // MCP target name
	path    string                            // MCP endpoint path (informational)
	// hostRewrite, authHeader and pathRewrite are what an AI backend needs on the route.
	hostRewrite string
	authHeader  string
	pathRewrite string
	// llm: answers (LLM completions, streamed or not) outlast Envoy's default route timeout.
	llm bool
	// gateways are the served Gateways whose routes use an AgentgatewayBackend's target
	gateways gatewayList
	// md is room for the cluster's metadata allocated with the cluster (finishCluster); nil: none
	md *metadataBlock
	// mux, set on a multiplexed MCP backend's target, holds its targets; its cluster is
	// contract.MuxCluster, the bootstrap's (never emitted).
	mux *muxBackend
}

// setMCP makes tg an MCP target of transport (contract.Transport*), MCP target name and path. An
// MCP session lives on one server, so the target is balanced by source (balancedBySource): its
// cluster uses RING_HASH on the hash its routes take of the client's source address
// (xdsCommon.hashBySource), which places initialize and every request without a session header,
// and is legacy SSE's only affinity. Every MCP target goes through here, whatever its cluster (a
// static host's, or a Service port's EDS cluster: by appProtocol, a selector, a static host
// naming the Service).
func (tg *target) setMCP(transport, name, path string) {
	tg.mcp, tg.name, tg.path = transport, name, path
	tg.cluster.LbPolicy = clusterv3.Cluster_RING_HASH
}

// balancedBySource reports whether the target's cluster balances by the routes' hash of the
// client's source address (RING_HASH, set by setMCP only); its routes then carry that hash
// policy. Other clusters, a plain Service's among them, leave lb_policy unset: Envoy's default
// ROUND_ROBIN, which spreads a client's requests over the endpoints one by one, as users of
// Envoy and Gateway API expect of a Service (hashing the source address would send everyone
// behind one NAT or L7 load balancer to one pod). Not LEAST_REQUEST (Envoy Gateway's default):
// it pays where request costs differ widely, which for mcpgate's long-lived streams are the MCP
// and LLM targets, none of them balanced this way; for ordinary requests round robin is the
// default every Envoy user knows, and it is deterministic.
func (tg *target) balancedBySource() bool {
	return tg.cluster.GetLbPolicy() == clusterv3.Cluster_RING_HASH
}

// pinsSessions reports whether the stateful session envelope keeps the target's sessions on the
// server that opened them: an MCP target whose cluster can have several hosts (EDS, or a name
// resolved by STRICT_DNS). The ring hash on the caller's address cannot: a client's address may
// change within a session, and an initialize request carries no session id to hash.
func (tg *target) pinsSessions() bool {
	if tg.mcp == "" {
		return false
	}
	switch tg.cluster.GetType() {
	case clusterv3.Cluster_EDS, clusterv3.Cluster_STRICT_DNS:
		return true
	}
	return false
}

// finishCluster completes the target's cluster once the target is known: its metadata, the
// backend and MCP target that Envoy's access log shows for the requests the cluster serves
// (contract.FromCluster), and for MCP and LLM targets, whose streams hold a request and an
// upstream connection for as long as they last, circuit breakers that do not cap them
// (xdsCommon.streamBreakers).
func (tg *target) finishCluster(x *xdsCommon) {
	if tg.mux != nil {
		for _, m := range tg.mux.targets {
			m.finishCluster(x)
		}
		return
	}
	fields := [2][2]string{{contract.FieldBackend, tg.backend}, {contract.FieldTarget, tg.name}}
	if tg.md != nil {
		tg.cluster.Metadata = tg.md.fill(fields)
	} else {
		tg.cluster.Metadata = filterMetadata(fields)
	}
	if tg.mcp != "" || tg.llm {
		tg.cluster.CircuitBreakers = x.streamBreakers
	}
}

// backendInfo is an AgentgatewayBackend after translation.
type backendInfo struct {
	b        *v1alpha1.AgentgatewayBackend
	key      string  // "NS/NAME"
	target   *target // nil when the backend cannot be used
	err      string  // why target is nil ("field: message")
	status   *v1alpha1.AgentgatewayBackendStatus
	problems fieldErrors
	warnings fieldErrors // accepted, not applied as written (Status.Warnings)
}

// backendClusterPrefix starts the cluster name of an AgentgatewayBackend: PREFIX + "NS/NAME",
// and for an MCP backend "/" + its target's name.
const backendClusterPrefix = "agentgatewaybackend/"

// clusterName is the name of a static or AI backend's cluster.
func (bi *backendInfo) clusterName() string { return backendClusterPrefix + bi.key }

// translateBackends translates every backend on its own (forEach), then registers them in input
// order (the last of two with one name wins).
func (t *translation) translateBackends() {
	list := make([]backendInfo, 0, len(t.in.Backends)) // one allocation for all
	for _, b := range t.in.Backends {
		if b != nil && b.Name != "" {
			list = append(list, backendInfo{b: b, key: keyString(b.Namespace, b.Name)})
		}
	}
	forEach(len(list), func(i int) { t.translateBackendStatus(&list[i]) })
	for i := range list {
		bi := &list[i]
		k := key(bi.b.Namespace, bi.b.Name)
		t.backends[k] = bi
		t.st.Backends[k] = bi.status
		t.st.add(bi.problems)
		t.st.warnings = append(t.st.warnings, bi.warnings...)
	}
}

// translateBackendStatus translates a backend and writes its status and refusal.
func (t *translation) translateBackendStatus(bi *backendInfo) {
	b := bi.b
	field, msg, note := t.translateBackend(bi)
	gen := b.Generation
	sb := &backendStatusBlock{} // the status and its condition in one allocation
	bi.status = &sb.st
	sb.st.Conditions = sb.cond[:]
	if bi.target == nil {
		bi.err = field + ": " + msg
		sb.cond[0] = condition("Accepted", false, "Invalid", bi.err, gen)
		bi.problems.add(KindAgentgatewayBackend, b.Namespace, b.Name, field, msg)
		return
	}
	bi.target.finishCluster(t.xds)
	sb.cond[0] = condition("Accepted", true, "Accepted", note, gen)
}

// backendStatusBlock holds a backend's status.
type backendStatusBlock struct {
	st   v1alpha1.AgentgatewayBackendStatus
	cond [1]metav1.Condition
}

// translateBackend fills bi.target, or returns the field and message of the refusal. note
// describes the accepted backend (target, transport, path, limitations).
func (t *translation) translateBackend(bi *backendInfo) (field, msg, note string) {
	b := bi.b
	s := &b.Spec
	set := 0
	for _, p := range []bool{s.AI != nil, s.Static != nil, s.MCP != nil} {
		if p {
			set++
		}
	}
	if set != 1 {
		return "spec", "exactly one of ai, static and mcp must be set", ""
	}
	switch {
	case s.Static != nil:
		if field, err := checkHostPort(s.Static.Host, s.Static.Port); err != "" {
			return "spec.static." + field, err, ""
		}
		p := policiesTLS(s.Policies)
		if field, err := checkTLS(p); err != "" {
			return "spec.policies.tls" + field, err, ""
		}
		tls := tlsFor(s.Static.Host, s.Static.Port, p)
		bi.target = t.xds.addressTarget(bi.clusterName(), s.Static.Host, s.Static.Port, tls)
		bi.target.backend = bi.key
		note = "static " + joinHostPort(s.Static.Host, s.Static.Port)
		if tls != nil {
			note += " " + tls.describe()
		}
		return "", "", note
	case s.AI != nil:
		return t.translateAI(bi, bi.clusterName())
	default:
		return t.translateMCP(bi)
	}
}

func (t *translation) translateAI(bi *backendInfo, name string) (field, msg, note string) {
	b := bi.b
	p := b.Spec.AI.Provider
	if p == nil || p.OpenAI == nil {
		return "spec.ai.provider", "a provider is required; mcpgate supports openai (and OpenAI-compatible servers through host, port and path)", ""
	}
	host, port := openAIHost, int32(httpsPort)
	if p.Host != "" {
		host = p.Host
	}
	if p.Port != 0 {
		port = p.Port
	}
	if field, err := checkHostPort(host, port); err != "" {
		return "spec.ai.provider." + field, err, ""
	}
	if p.Path != "" && !strings.HasPrefix(p.Path, "/") {
		return "spec.ai.provider.path", "must start with /", ""
	}
	tp := policiesTLS(b.Spec.Policies)
	if field, err := checkTLS(tp); err != "" {
		return "spec.policies.tls" + field, err, ""
	}
	tls := tlsFor(host, port, tp)
	tg := t.xds.addressTarget(name, host, port, tls)
	tg.backend, tg.pathRewrite, tg.llm = bi.key, p.Path, true
	if tls == nil {
		tg.hostRewrite = host // over TLS, addressTarget set it (with the port unless 443)
	}
	if a := b.Spec.Policies; a != nil && a.Auth != nil && a.Auth.SecretRef != nil {
		v, err := t.secretAuthorization(b.Namespace, a.Auth.SecretRef.Name)
		if err != "" {
			return "spec.policies.auth.secretRef", err, ""
		}
		tg.authHeader = v
	}
	bi.target = tg
	note = fmt.Sprintf("openai-compatible provider at %s", joinHostPort(host, port))
	if tls != nil {
		note += " " + tls.describe()
	}
	if p.OpenAI.Model != nil {
		w := fmt.Sprintf("%q is not applied: requests keep their own model", *p.OpenAI.Model)
		bi.warnings.add(KindAgentgatewayBackend, b.Namespace, b.Name, "spec.ai.provider.openai.model", w)
		note += "; spec.ai.provider.openai.model " + w
	}
	return "", "", note
}

// secretAuthorization reads the Authorization value from a Secret: its key "Authorization" (a
// bare key gets "Bearer " in front).
func (t *translation) secretAuthorization(ns, name string) (string, string) {
	sec := t.secrets[key(ns, name)]
	if sec == nil {
		return "", fmt.Sprintf("Secret %s/%s not found", ns, name)
	}
	v, ok := sec.Data["Authorization"]
	if !ok {
		if s, ok2 := sec.StringData["Authorization"]; ok2 {
			v, ok = []byte(s), true
		}
	}
	val := strings.TrimSpace(string(v))
	if !ok || val == "" {
		return "", fmt.Sprintf("Secret %s/%s has no key Authorization", ns, name)
	}
	if !strings.Contains(val, " ") {
		val = "Bearer " + val
	}
	return val, ""
}

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
	for i := range targets {
		tg := &targets[i]
		f := func(suffix string) string { return "spec.mcp.targets[" + strconv.Itoa(i) + "]" + suffix } // built only for errors
		if tg.Name == "" {
			return f(".name"), "a name is required", ""
		}
		if (tg.Static == nil) == (tg.Selector == nil) {
			return f(""), "exactly one of static and selector must be set", ""
		}
		if tg.Static != nil {
			st := tg.Static
			if field, err := checkHostPort(st.Host, st.Port); err != "" {
				return f(".static." + field), err, ""
			}
			if st.Path != "" && !strings.HasPrefix(st.Path, "/") {
				return f(".static.path"), "must start with /", ""
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
			found, err := t.selectorTargets(bi, spec, cname)
			if err != "" {
				return "spec.mcp.targets[" + strconv.Itoa(i) + "].selector", err, ""
			}
			if len(found) == 0 {
				// Left out while others remain: a Service not created yet takes no other target down.
				empty = append(empty, i)
				continue
			}
			for _, tg := range found {
				all = append(all, mcpTarget{tg: tg, index: i})
			}
			continue
		}
		tg, tls := t.staticMCPTarget(cname, spec)
		tg.backend = bi.key
		mt := mcpTarget{tg: tg, index: i}
		if tls != nil {
			mt.note = "reached " + tls.describe()
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
		return "", "", withLeftOut(note)
	}
	bi.target = t.muxTarget(bi, all)
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
}

// staticMCPTarget builds the target of a checked static MCP target: a Service port's EDS cluster
// when its host names one (serviceOfHost), else a host's; over TLS as tls says (nil: plaintext).
func (t *translation) staticMCPTarget(cname string, spec *v1alpha1.McpTargetSelector) (*target, *upstreamTLS) {
	st := spec.Static
	tr := transportOf(st.Protocol)
	path := st.Path
	if path == "" {
		path = defaultMCPPath(tr)
	}
	tls := tlsFor(st.Host, st.Port, targetTLS(st))
	var tg *target
	if svc, p := t.serviceOfHost(st.Host, st.Port); p != nil {
		tg = t.serviceCluster(cname, svc, p)
		if tls != nil {
			tls.h2 = isH2C(p)
		}
		t.xds.withTLS(tg, tls)
	} else {
		tg = t.xds.addressTarget(cname, st.Host, st.Port, tls)
	}
	tg.setMCP(tr, string(spec.Name), path)
	return tg, tls
}

// notMultiplexed says why an MCP backend's targets, all of them, cannot go behind the mux
// ("" when they can, or when there is one and prefixMode does not ask for prefixes), and the
// field at the root of it. The mux speaks Streamable HTTP to its targets and routes each call by
// its name's prefix (prefixMode Never: by the target ext_proc resolved the bare name to): so
// every target must speak Streamable HTTP, and each name must be unique and free of the
// separators ("_" of tool and prompt names, "+" of resource URIs, "," of the target list
// ext_proc gets).
func (t *translation) notMultiplexed(m *v1alpha1.MCPBackend, all []mcpTarget) (why, field string) {
	if len(all) < 2 && m.PrefixMode != v1alpha1.PrefixModeAlways {
		return "", ""
	}
	seen := map[string]int{}
	for _, mt := range all {
		f := "spec.mcp.targets[" + strconv.Itoa(mt.index) + "]"
		if mt.tg.mcp != contract.TransportStreamableHTTP {
			return fmt.Sprintf("target %s speaks %s, and mcpgate's mux speaks Streamable HTTP to its targets", mt.tg.name, mt.tg.mcp), f
		}
		if err := (contract.MuxTarget{Name: mt.tg.name, Cluster: mt.tg.cluster.Name, Path: mt.tg.path}).Check(); err != nil {
			why := "target " + mt.tg.name + " does not fit the mux: " + err.Error()
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
		if j, dup := seen[mt.tg.name]; dup {
			return fmt.Sprintf("two targets are named %s (spec.mcp.targets[%d] and [%d]): a prefix must name one", mt.tg.name, j, mt.index), f
		}
		seen[mt.tg.name] = mt.index
	}
	return "", ""
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
		rest = append(rest, o.tg.name)
	}
	w := fmt.Sprintf("not multiplexed: %s; only the first target (%s) is routed, %s not", why, first.tg.name, strings.Join(rest, ", "))
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
	m := bi.b.Spec.MCP
	mx := &muxBackend{spec: contract.Mux{Backend: bi.key, PrefixMode: string(m.PrefixMode), FailureMode: string(m.FailureMode)}}
	if mx.spec.PrefixMode == "" {
		mx.spec.PrefixMode = string(v1alpha1.PrefixModeConditional)
	}
	if mx.spec.FailureMode == "" {
		mx.spec.FailureMode = contract.FailClosed
	}
	names := make([]string, len(all))
	for i, mt := range all {
		names[i] = mt.tg.name
		mx.targets = append(mx.targets, mt.tg)
		mx.spec.Targets = append(mx.spec.Targets, contract.MuxTarget{Name: mt.tg.name, Cluster: mt.tg.cluster.Name, Path: mt.tg.path})
	}
	mx.names = strings.Join(names, ",")
	return &target{cluster: &clusterv3.Cluster{Name: contract.MuxCluster}, backend: bi.key, mcp: contract.TransportStreamableHTTP, mux: mx}
}

// muxBackend is what a multiplexed backend's routes need.
type muxBackend struct {
	spec    contract.Mux // without Gateway, which each route's Gateway fills in (header)
	targets []*target    // its targets, in spec order: their clusters are emitted
	names   string       // the targets' names joined by "," (contract.MetadataTargets)
}

// metadata returns the contract.MetadataMux value of the backend's routes on Gateway gw: the
// header's JSON under prefixMode Never, where ext_proc resolves each call's target, with the
// request header changes of the route's rule (contract.Mux.RequestHeaders: Envoy's router
// applies them to the call after ext_proc, and the resolver's lists must bring the targets the
// same headers); "" (no key)
// otherwise, where the prefix names it. Only there: the JSON grows with the targets and rides on
// every ext_proc stream of the route, and its presence tells ext_proc the names are bare.
func (mx *muxBackend) metadata(gw string, c *compiledRule) string {
	if mx.spec.PrefixMode != contract.PrefixModeNever {
		return ""
	}
	spec := mx.spec
	if len(c.reqChanges.Remove) > 0 || len(c.reqChanges.Add) > 0 {
		spec.RequestHeaders = &c.reqChanges
	}
	spec.Host = c.hostRewrite
	return muxJSON(spec, gw)
}

// maxGatewayKey is the longest Gateway key, NAMESPACE/NAME (63 + 1 + 253 bytes).
const maxGatewayKey = 317

// metadataTooLong says why the Never metadata of rule c's route to this backend would be longer
// than Envoy takes (contract.MaxMetadataValue) on any Gateway, or "".
func (mx *muxBackend) metadataTooLong(c *compiledRule) string {
	n := len(mx.metadata("", c)) + maxGatewayKey + 16 // JSON escapes of the key, at most
	if mx.spec.PrefixMode != contract.PrefixModeNever || n <= contract.MaxMetadataValue {
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
// with or without the final dot; another domain is not recognised, it keeps the DNS name) and the Service port of that
// number, when both are among the inputs with at least one EndpointSlice of the Service
// (Kubernetes: every Service and slice; standalone: those in the files, where a Service alone,
// as the lab's, keeps the DNS name). A Service name resolves to its ClusterIP, behind which kube-proxy picks a pod per
// connection: Envoy would see one host, and the requests of a session, spread over connections,
// would reach pods that do not hold it. Its EndpointSlices instead give Envoy every ready pod, so
// the ring hash and the session envelope keep a session on its pod. An ExternalName Service and
// a Service without such a port keep the DNS name (nil port).
func (t *translation) serviceOfHost(host string, port int32) (*corev1.Service, *corev1.ServicePort) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	h, _ = strings.CutSuffix(h, "."+t.opts.ClusterDomain)
	name, rest, _ := strings.Cut(h, ".")
	ns, svcLabel, _ := strings.Cut(rest, ".")
	if svcLabel != "svc" {
		return nil, nil
	}
	svc := t.services[key(ns, name)]
	if svc == nil || svc.Spec.Type == corev1.ServiceTypeExternalName || len(t.slices[key(svc.Namespace, svc.Name)]) == 0 {
		return nil, nil
	}
	for i := range svc.Spec.Ports {
		if p := &svc.Spec.Ports[i]; p.Port == port && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			return svc, p
		}
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
func (t *translation) selectorTargets(bi *backendInfo, tg *v1alpha1.McpTargetSelector, prefix string) ([]*target, string) {
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
	var out []*target
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
				out = append(out, tgt)
			}
		}
	}
	return out, ""
}

// serviceTarget builds the EDS target of a Service port. MCP ports (by appProtocol) get their
// transport, target name and path from the port and the Service's annotations.
func (t *translation) serviceTarget(clusterName string, svc *corev1.Service, p *corev1.ServicePort) *target {
	tg := t.serviceCluster(clusterName, svc, p)
	if tr := mcpTransportOfPort(p); tr != "" {
		name := svc.Annotations[AnnotationMCPTargetName]
		if name == "" {
			if p.Name != "" {
				name = svc.Name + "-" + p.Name
			} else {
				name = svc.Name + "-" + strconv.Itoa(int(p.Port))
			}
		}
		path := svc.Annotations[AnnotationMCPPath]
		if path == "" {
			path = svc.Annotations[legacyAnnotationMCPPath]
		}
		if path == "" {
			path = defaultMCPPath(tr)
		}
		tg.setMCP(tr, name, path)
	}
	return tg
}

// isH2C reports whether a Service port declares HTTP/2 (appProtocol kubernetes.io/h2c).
func isH2C(p *corev1.ServicePort) bool {
	return p.AppProtocol != nil && *p.AppProtocol == AppProtocolH2C
}

// serviceCluster is the target of a Service port's EDS cluster, its endpoints the port's ready
// ones, balanced per request (Envoy's default ROUND_ROBIN) unless setMCP makes it an MCP target.
func (t *translation) serviceCluster(clusterName string, svc *corev1.Service, p *corev1.ServicePort) *target {
	c := t.xds.edsCluster(clusterName)
	if isH2C(p) {
		c.TypedExtensionProtocolOptions = t.xds.upstreamH2C
	}
	return &target{cluster: c, cla: t.loadAssignment(clusterName, svc, p)}
}

// loadAssignment builds the endpoints of a Service port from its EndpointSlices: the ready
// addresses, each with the slice port named like the Service port.
func (t *translation) loadAssignment(clusterName string, svc *corev1.Service, p *corev1.ServicePort) *endpointv3.ClusterLoadAssignment {
	seen := map[string]bool{}
	var addrs []hostPort
	for _, s := range t.slices[key(svc.Namespace, svc.Name)] {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port := int32(0)
		for _, sp := range s.Ports {
			name := ""
			if sp.Name != nil {
				name = *sp.Name
			}
			if name == p.Name && sp.Port != nil {
				port = *sp.Port
				break
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				hp := hostPort{host: a, port: port}
				if k := hp.String(); !seen[k] {
					seen[k] = true
					addrs = append(addrs, hp)
				}
			}
		}
	}
	sort.Slice(addrs, func(i, j int) bool {
		if addrs[i].host != addrs[j].host {
			return addrs[i].host < addrs[j].host
		}
		return addrs[i].port < addrs[j].port
	})
	return buildLoadAssignment(clusterName, addrs)
}

type hostPort struct {
	host string
	port int32
}

func (h hostPort) String() string { return joinHostPort(h.host, h.port) }

func joinHostPort(host string, port int32) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(int(port))
	}
	return host + ":" + strconv.Itoa(int(port))
}

func isIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// checkHostPort validates a target address: it returns the field at fault ("host" or "port")
// and what is wrong with it, or "", "" when the address is usable.
func checkHostPort(host string, port int32) (field, msg string) {
	switch {
	case host == "":
		return "host", "a host is required"
	case !isIP(host) && !validDNSName(host):
		return "host", fmt.Sprintf("%q is neither an IP address nor a DNS name", host)
	case port == 0:
		return "port", "a port is required"
	case port < 1 || port > 65535:
		return "port", fmt.Sprintf("%d is out of range 1-65535", port)
	}
	return "", ""
}

func validDNSName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
