// AgentgatewayBackends (translateBackends, before the routes compile) and targets: a target is
// where a backendRef sends traffic, one Envoy cluster and what a route to it adds. Static and AI
// backends and Service port targets (EDS clusters) are here; MCP backends, multiplexing
// included, are in backendmcp.go.

package translator

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	// hostRewrite and pathRewrite are what an AI backend needs on the route (its credential is
	// the backend's spec.policies.auth, authOf).
	hostRewrite string
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
	// bridge, set on the single SSE target of an MCP backend, is the target Streamable HTTP
	// clients reach it through: the mux (contract.MuxCluster), whose muxBackend bridges
	// (contract.Mux.Bridge) and names this target as its only one. A rule that sends to the
	// backend alone routes the target's legacy requests to the target and the rest there
	// (compiledRule.bridge, bridgeRoutes). On a Streamable HTTP target it is made when a rule
	// first needs it (legacyBridge).
	bridge *target
	// legacy, set on the single Streamable HTTP target of an MCP backend that the mux can take,
	// is its backend's spec: a rule that sends to the backend alone with a match of a path
	// ending in /sse bridges its HTTP+SSE clients through the mux (legacyMatch, legacyBridge).
	legacy     *v1alpha1.MCPBackend
	legacyOnce sync.Once
	// btls is the BackendTLSPolicy that applies to a Service port's target, btlsPort the port
	btls     *btlsPolicy
	btlsPort *btlsPort
}

// legacyBridge returns tg's bridge for HTTP+SSE clients, made on first use (rules are compiled
// concurrently), or nil when tg has none (legacy unset).
func (tg *target) legacyBridge() *target {
	if tg.legacy == nil {
		return nil
	}
	tg.legacyOnce.Do(func() { tg.bridge = newBridge(tg.backend, tg.legacy, tg) })
	return tg.bridge
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
	key      string    // "NS/NAME"
	target   *target   // nil when the backend cannot be used
	auth     routeAuth // its own spec.policies.auth (backendAuth)
	err      string    // why target is nil ("field: message")
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
	if bi.target != nil {
		field, msg, note = t.backendAuth(bi, note)
	}
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

// backendAuth validates the backend's own spec.policies.auth into bi.auth (authOf), on any kind
// of backend: it returns note, with the warning of a Secret used as read before, or the field and
// message of its refusal (bi.target is then nil).
func (t *translation) backendAuth(bi *backendInfo, note string) (field, msg, _ string) {
	b := bi.b
	p := b.Spec.Policies
	if p == nil || p.Auth == nil {
		return "", "", note
	}
	a, field, msg, stale := t.translateAuth(b.Namespace, p.Auth, "spec.policies.auth")
	if msg != "" {
		bi.target = nil
		return field, msg, ""
	}
	bi.auth = a
	if stale != "" {
		bi.warnings.add(KindAgentgatewayBackend, b.Namespace, b.Name, "spec.policies.auth.secretRef", stale)
		note += "; spec.policies.auth.secretRef " + stale
	}
	return "", "", note
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
	if msg := headerValueProblem(p.Path); msg != "" { // the route's regex rewrite substitution
		return "spec.ai.provider.path", msg, ""
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
// bare key gets "Bearer " in front). The value is checked as the inline key (translateAuth) is:
// not empty, at most maxKeyChars characters (white space around it, such as the line break a
// file-made Secret ends with, not counted: it is trimmed), and a value Envoy cannot take as a
// header value (headerValueProblem: bytes that are not UTF-8, a NUL, CR or LF) refuses the
// object that names it: the route header would make Envoy refuse the RouteConfiguration of every
// port that routes to it, or, not UTF-8, keep the xDS server from encoding it. The message names
// the Secret, the key and why, never the value.
func (t *translation) secretAuthorization(ns, name string) (string, string) {
	sec := t.secrets[key(ns, name)]
	if why := t.in.SecretErrors[key(ns, name)]; sec == nil && why != "" {
		return "", fmt.Sprintf("Secret %s/%s could not be read: %s", ns, name, why)
	}
	if sec == nil {
		return "", fmt.Sprintf("Secret %s/%s not found", ns, name)
	}
	v, ok := sec.Data["Authorization"]
	if !ok {
		if s, ok2 := sec.StringData["Authorization"]; ok2 {
			v, ok = []byte(s), true
		}
	}
	if !ok {
		return "", fmt.Sprintf("Secret %s/%s has no key Authorization", ns, name)
	}
	trimmed := strings.TrimSpace(string(v))
	if trimmed == "" {
		return "", fmt.Sprintf("Secret %s/%s key Authorization: the value is empty", ns, name)
	}
	if n := utf8.RuneCountInString(trimmed); n > maxKeyChars {
		return "", fmt.Sprintf("Secret %s/%s key Authorization: the value is %d characters long, over the %d allowed (as for an inline key)", ns, name, n, maxKeyChars)
	}
	val, msg := authorizationValue(string(v))
	if msg != "" {
		return "", fmt.Sprintf("Secret %s/%s key Authorization: %s", ns, name, msg)
	}
	return val, ""
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
// ones, balanced per request (Envoy's default ROUND_ROBIN) unless setMCP makes it an MCP target,
// reached over TLS when a BackendTLSPolicy applies to the port (applyBackendTLS).
func (t *translation) serviceCluster(clusterName string, svc *corev1.Service, p *corev1.ServicePort) *target {
	c := t.xds.edsCluster(clusterName)
	if isH2C(p) {
		c.TypedExtensionProtocolOptions = t.xds.upstreamH2C
	}
	tg := &target{cluster: c, cla: t.loadAssignment(clusterName, svc, p)}
	t.applyBackendTLS(tg, svc, p)
	return tg
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
