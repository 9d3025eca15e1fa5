// Package translator turns Gateway API objects, AgentgatewayBackends and AgentgatewayPolicies into
// the Envoy xDS resources of each Gateway, the mcpgate policy resources that ext_proc enforces, and
// the status of every input object.
//
// Translate is a pure function: it does no I/O, keeps no state between calls and gives the same
// output for the same input (an Options.Cache carries only the checks of CEL and JWKS texts from
// one call to the next, which saves time and changes nothing in the output), on however many
// CPUs (GOMAXPROCS) it spreads its work. The names it gives resources, the ext_proc filter
// settings and the per-route gRPC metadata are the contract of docs/design.md.
//
// Which Gateways are served: a Gateway whose GatewayClass names Options.ControllerName, or whose
// class name is one of Options.GatewayClassNames. When the GatewayClass object is not in the input
// (standalone files usually hold none), the Gateway is served as well, unless
// Options.RequireGatewayClass is set (the Kubernetes controller sets it, because there the class
// decides which controller owns a Gateway).
//
// Fail closed: an object that is invalid is refused alone and named in the status; everything
// valid still translates. A route rule that an invalid policy applies to does not become open: it
// answers 500 (direct response) until the policy is fixed. A rule with an invalid part (a match,
// a filter, a timeout) answers 500 as a whole, and its route is PartiallyInvalid, or not
// accepted when no rule is valid. A backendRef that cannot be resolved gets its share of the
// traffic answered with 500; the rule's other backendRefs keep theirs.
//
// MCP specifics: Envoy cannot fan out to several MCP servers, so an AgentgatewayBackend with
// several Streamable HTTP targets (or a selector finding several Services), or one target under
// prefixMode Always, is multiplexed: its routes go to mcpgate's mux (contract.MuxCluster, a
// bootstrap cluster), told the targets by a route header (contract.HeaderMux), and the mux
// reaches each target back through the Gateway's mux upstream listener, whose routes
// (contract.MuxUpstreamRoutes) every Gateway gets. Where the mux cannot serve the targets
// (an SSE target among several) the first target is routed and the status says why; under
// prefixMode Never the route's ext_proc metadata also carries the Mux (contract.MetadataMux), as
// ext_proc resolves each call's target (docs/design.md, Multiplexing). MCP clusters balance by ring hash and their routes hash the caller's source
// address: a session's first request (initialize, or the legacy SSE GET) carries no session id
// yet, so hashing Mcp-Session-Id or sessionId would send later requests to another replica than
// the one that created the session; the source address keeps the whole session on one. MCP
// routes have no request timeout (streams last) and an idle timeout of one hour; LLM routes have
// no request timeout (Envoy's default of 15 s would cut long completions) unless the HTTPRoute
// sets one.
//
// Where things are: Translate (translator.go, with Resources, Options and Output) runs the
// stages of translation.run (translate.go), in this order:
//   - index: the lookup maps of the input (translate.go); the GatewayClasses, and the served
//     Gateways with their listeners (gateway.go).
//   - backends: AgentgatewayBackends into targets, the clusters that backendRefs send to
//     (backend.go; MCP backends and multiplexing, backendmcp.go; upstream TLS, upstreamtls.go).
//   - routes compiled, each once for all listeners (route.go: rules and matches, with
//     pathmatch.go for paths Envoy never routes by; routefilters.go: filters; routerefs.go:
//     backendRefs), while the policies are validated and indexed (policy.go; CEL and JWKS
//     checks, check.go; rate limits, ratelimit.go; MCP OAuth metadata, mcpoauth.go).
//   - routes attached to listeners (routeattach.go), each rule's policies merged
//     (policymerge.go) and its Envoy routes built (routeenvoy.go; CORS, cors.go).
//   - the policies' status (policystatus.go) and each Gateway's status and xDS (gateway.go:
//     finishGateways; build.go: virtual hosts, route configurations, clusters, listeners;
//     envoy.go: the Envoy messages every Gateway shares, listeners and per-route ext_proc
//     configs), then the Affected conditions (affected.go).
//
// Also: the Status and its refusals (status.go), forEach and concurrently (parallel.go),
// Redacted and Output.Marshal, the printed configuration (render.go), GatewayConfig.Validate
// (validate.go). ENVOY.md says why each Envoy field is set as it is.
package translator

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/contract"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// Names and values that the generated configuration and the bootstrap agree on (docs/design.md).
const (
	// DefaultControllerName is the GatewayClass controllerName that mcpgate serves by default.
	DefaultControllerName = "mcpgate.dev/gateway-controller"
	// ExtProcFilterName is the name of the ext_proc HTTP filter and its per-route config key.
	ExtProcFilterName = "envoy.filters.http.ext_proc"
	// RefuseAmbiguousPathsRoute is the name of the first route of every virtual host: it answers
	// 400 to a path with ";" (path parameters, which Envoy's prefix matches do not strip and Java
	// servers do) or with an escaped "/", "\" or "." left after normalization (double-escaped),
	// so that such a path cannot reach a broader route than the one its server serves. The access
	// log's route_name shows it.
	RefuseAmbiguousPathsRoute = "mcpgate/refuse-ambiguous-paths"
	// MisdirectedRequestRoute is the name of the route that answers 421 (Misdirected Request) on
	// an HTTPS port to a request whose Host belongs to another listener than the one its
	// connection's SNI chose (docs/design.md, HTTPS listeners). The access log's route_name shows
	// it.
	MisdirectedRequestRoute = "mcpgate/misdirected-request"
	// DefaultMessageTimeout is the ext_proc message timeout when Options leaves it zero.
	DefaultMessageTimeout = 10 * time.Second
	// DefaultMaxBodyBytes is the MCP body limit when Options leaves it zero.
	DefaultMaxBodyBytes = 4 << 20
	// DefaultUpstreamCAFile is the CA bundle that verifies TLS upstreams (LLM providers).
	DefaultUpstreamCAFile = "/etc/ssl/certs/ca-certificates.crt"
	// DefaultClusterDomain is the Kubernetes cluster DNS domain when Options leaves it empty.
	DefaultClusterDomain = "cluster.local"
	// bufferSlack is added to MaxBodyBytes for the listener buffer limit, so that ext_proc, not
	// Envoy's 413, answers a body at the limit. Envoy buffers a BUFFERED ext_proc body up to the
	// stream's buffer limit, which is the listener's per_connection_buffer_limit_bytes (1.36+:
	// unless a route sets request_body_buffer_limit), and answers 413 beyond it; an answer's
	// body beyond it gets 500.
	bufferSlack = 64 << 10
	// LargestMaxBodyBytes is the largest MCP body limit (Options.MaxBodyBytes): with
	// bufferSlack, the largest HTTP/2 stream window Envoy takes (2^31-1), which is an HTTP/2
	// stream's buffer limit.
	LargestMaxBodyBytes = math.MaxInt32 - bufferSlack
)

// CheckMaxBodyBytes reports why n cannot be the MCP body limit (a --max-body-bytes flag), nil
// when it can: it must be positive and at most LargestMaxBodyBytes.
func CheckMaxBodyBytes(n int64) error {
	if n <= 0 || n > LargestMaxBodyBytes {
		return fmt.Errorf("--max-body-bytes %d: must be between 1 and %d (Envoy's largest HTTP/2 stream window, less %d bytes of slack)", n, LargestMaxBodyBytes, bufferSlack)
	}
	return nil
}

// Resources is everything the translator reads.
type Resources struct {
	// GatewayClasses are the classes read; those whose controllerName is Options.ControllerName
	// get an Accepted status and have their Gateways served.
	GatewayClasses []*gwv1.GatewayClass
	// Gateways are all Gateways read; those of a served class (see Options) are translated.
	Gateways []*gwv1.Gateway
	// HTTPRoutes are the routes that may attach to the served Gateways' listeners.
	HTTPRoutes []*gwv1.HTTPRoute
	// Backends are the AgentgatewayBackends that HTTPRoute backendRefs may name (MCP targets,
	// AI providers).
	Backends []*v1alpha1.AgentgatewayBackend
	// Policies holds both policy kinds; TypeMeta.Kind and APIVersion say which (an
	// EnterpriseAgentgatewayPolicy comes in through enterprise.AsAgentgatewayPolicy). An empty
	// Kind means AgentgatewayPolicy.
	Policies []*v1alpha1.AgentgatewayPolicy
	// Services are the Services that backendRefs and MCP target selectors resolve to; a
	// Service port becomes an EDS cluster.
	Services []*corev1.Service
	// EndpointSlices give the Services' endpoints, matched to a Service by its
	// kubernetes.io/service-name label; of IPv4 and IPv6 slices, endpoints not marked unready
	// are used.
	EndpointSlices []*discoveryv1.EndpointSlice
	// Secrets hold the Authorization values (key "Authorization") that AI backends'
	// spec.policies.auth.secretRef names.
	Secrets []*corev1.Secret
	// SecretErrors say why Secrets that backends name could not be read. A backend whose Secret
	// is also in Secrets (a copy read before) uses that copy, with a warning that says why; one
	// whose Secret is not is refused with the reason, not as a Secret not found.
	SecretErrors map[types.NamespacedName]string
	// ConfigMaps hold the CA certificates (key ca.crt) that Gateways' client certificate
	// validation (spec.tls.frontend caCertificateRefs) and BackendTLSPolicies'
	// validation.caCertificateRefs name.
	ConfigMaps []*corev1.ConfigMap
	// ConfigMapErrors say why ConfigMaps that Gateways name could not be read, as SecretErrors
	// do for Secrets: a copy in ConfigMaps is used with a warning; without one the reference is
	// refused with the reason.
	ConfigMapErrors map[types.NamespacedName]string
	// BackendTLSPolicies say how Service ports are reached over TLS (Gateway API v1): the EDS
	// clusters of the ports they apply to verify the backend's certificate.
	BackendTLSPolicies []*gwv1.BackendTLSPolicy
	// Namespaces give the labels that namespace selectors (allowedRoutes, MCP target
	// selectors) match; a namespace absent here still has its kubernetes.io/metadata.name label.
	Namespaces []*corev1.Namespace
	// ReferenceGrants permit backendRefs to another namespace (Gateway API: a cross-namespace
	// backendRef is refused unless a ReferenceGrant in the target's namespace allows it).
	ReferenceGrants []*gwv1.ReferenceGrant
	// UnreadablePolicies are policies whose documents did not load (a field mcpgate does not
	// know, a value of the wrong type, a policy kind under an apiVersion it is not served in),
	// kept as far as they could be read: their metadata and targetRefs. Each is refused, and
	// what it targets fails closed as under any refused policy (its routes answer 500): a policy
	// lost to a typo must not leave its routes open. The file provider fills it; the API server
	// refuses such objects before a controller sees them.
	UnreadablePolicies []UnreadablePolicy
}

// UnreadablePolicy is a policy whose document did not load, and why (see
// Resources.UnreadablePolicies).
type UnreadablePolicy struct {
	// Policy holds what could be read: TypeMeta.Kind (as in Resources.Policies), metadata and
	// spec.targetRefs.
	Policy *v1alpha1.AgentgatewayPolicy
	// Field and Message say why the document did not load.
	Field, Message string
}

// Options tune the translation. The zero value is valid.
type Options struct {
	// ControllerName is the GatewayClass controllerName served (default DefaultControllerName).
	ControllerName string
	// GatewayClassNames are further GatewayClass names whose Gateways are served whatever their
	// class's controllerName (e.g. enterprise-agentgateway for manifests written for it).
	GatewayClassNames []string
	// RequireGatewayClass, when set, refuses to serve a Gateway whose GatewayClass is absent
	// from the input. Unset (standalone files), such a Gateway is served.
	RequireGatewayClass bool
	// BindAddress is the address Envoy listeners bind (default 0.0.0.0; standalone: 127.0.0.1).
	BindAddress string
	// ExclusivePorts says that every Gateway's Envoy runs on one host (standalone), so a port
	// can belong to one Gateway only: the oldest Gateway keeps it, the others' listeners on it
	// are Conflicted.
	ExclusivePorts bool
	// MessageTimeout is the ext_proc message timeout (default DefaultMessageTimeout).
	MessageTimeout time.Duration
	// MaxBodyBytes is the MCP body limit (default DefaultMaxBodyBytes, at most
	// LargestMaxBodyBytes).
	MaxBodyBytes int64
	// UpstreamCAFile is the CA bundle for TLS upstreams (default DefaultUpstreamCAFile).
	UpstreamCAFile string
	// ClusterDomain is the Kubernetes cluster's DNS domain (default DefaultClusterDomain): a
	// static target host NAME.NS.svc.CLUSTERDOMAIN names the Service NAME in NS.
	ClusterDomain string
	// Cache, when set, carries the checks of CEL expressions and JWKS documents over to the
	// next translation with the same Cache (see Cache); nil checks everything anew.
	Cache *Cache
}

// ServiceOfHost returns the Service a static target's host names: NAME.NS.svc or
// NAME.NS.svc.CLUSTERDOMAIN (Options.ClusterDomain) names the Service NAME in NS; ok is false for
// any other host.
func (o Options) ServiceOfHost(host string) (ns, name string, ok bool) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	h, _ = strings.CutSuffix(h, "."+o.withDefaults().ClusterDomain)
	name, rest, _ := strings.Cut(h, ".")
	ns, svcLabel, _ := strings.Cut(rest, ".")
	return ns, name, svcLabel == "svc" && ns != "" && name != ""
}

// ServesClass reports whether the Gateways of the GatewayClass named name are served: c is that
// class, nil when it is not among the inputs (see the package comment).
func (o Options) ServesClass(name string, c *gwv1.GatewayClass) bool {
	o = o.withDefaults()
	if slices.Contains(o.GatewayClassNames, name) {
		return true
	}
	if c == nil {
		return !o.RequireGatewayClass
	}
	return string(c.Spec.ControllerName) == o.ControllerName
}

func (o Options) withDefaults() Options {
	if o.ControllerName == "" {
		o.ControllerName = DefaultControllerName
	}
	if o.BindAddress == "" {
		o.BindAddress = "0.0.0.0"
	}
	if o.MessageTimeout <= 0 {
		o.MessageTimeout = DefaultMessageTimeout
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	o.MaxBodyBytes = min(o.MaxBodyBytes, LargestMaxBodyBytes) // the flags refuse more (CheckMaxBodyBytes)
	if o.UpstreamCAFile == "" {
		o.UpstreamCAFile = DefaultUpstreamCAFile
	}
	if o.ClusterDomain = strings.ToLower(strings.Trim(o.ClusterDomain, ".")); o.ClusterDomain == "" {
		o.ClusterDomain = DefaultClusterDomain
	}
	return o
}

// Output is the result of a translation.
type Output struct {
	// Gateways holds the configuration of each served Gateway, keyed "NS/NAME" (its node group).
	Gateways map[string]*GatewayConfig
	// Status is the status of every input object the translator owns.
	Status Status
}

// GatewayConfig is the xDS configuration of one Gateway, each list sorted by resource name.
// Resources share sub-messages with each other and with other gateways' resources (timeouts,
// hash policies, processing modes, typed configs): treat them as immutable and clone before
// changing anything.
type GatewayConfig struct {
	// Listeners holds one Envoy listener per port of the Gateway's accepted listeners.
	Listeners []*listenerv3.Listener
	// Routes holds each listener's route configuration, named like the listener, and the
	// bootstrap's mux upstream listener's, contract.MuxUpstreamRoutes (always; no route when
	// nothing is multiplexed).
	Routes []*routev3.RouteConfiguration
	// Clusters holds the upstream clusters the routes use (MCP targets, a multiplexed backend's
	// all, backends, Service ports); not the bootstrap's (contract.MuxCluster).
	Clusters []*clusterv3.Cluster
	// Endpoints holds the load assignments of the EDS clusters, named by cluster.
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Policies holds the merged policies the routes name for ext_proc (served under
	// contract.PolicyTypeURL).
	Policies []*policyv1.Policy
	// Secrets holds the certificates and keys of the HTTPS listeners (SDS, named
	// SecretName(ns, name)) and the CA certificates that verify their clients' certificates
	// (validation contexts, named ClientCASecretName(ns, gateway, port)). They hold private
	// keys: print them only through Redacted.
	Secrets []*tlsv3.Secret
}

// Resources returns the configuration as type URL -> resources, in name order.
func (g *GatewayConfig) Resources() map[string][]proto.Message {
	return map[string][]proto.Message{
		resourcev3.ListenerType: toMessages(g.Listeners),
		resourcev3.RouteType:    toMessages(g.Routes),
		resourcev3.ClusterType:  toMessages(g.Clusters),
		resourcev3.EndpointType: toMessages(g.Endpoints),
		contract.PolicyTypeURL:  toMessages(g.Policies),
		resourcev3.SecretType:   toMessages(g.Secrets),
	}
}

// NodeGroups returns what the xds server serves: one entry per gateway key, each type URL ->
// resources, plus the group contract.AllGateways ("*") holding the policies of every gateway
// (deduplicated by name). Resources are in name order.
func (o *Output) NodeGroups() map[string]map[string][]proto.Message {
	groups := make(map[string]map[string][]proto.Message, len(o.Gateways)+1)
	all := map[string]*policyv1.Policy{}
	for key, g := range o.Gateways {
		groups[key] = g.Resources()
		for _, p := range g.Policies {
			all[p.GetName()] = p
		}
	}
	policies := make([]*policyv1.Policy, 0, len(all))
	for _, p := range all {
		policies = append(policies, p)
	}
	sort.Slice(policies, func(i, j int) bool { return policies[i].GetName() < policies[j].GetName() })
	groups[contract.AllGateways] = map[string][]proto.Message{contract.PolicyTypeURL: toMessages(policies)}
	return groups
}

// GatewayKeys returns the keys of o.Gateways, sorted.
func (o *Output) GatewayKeys() []string {
	keys := make([]string, 0, len(o.Gateways))
	for k := range o.Gateways {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func toMessages[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

// Translate translates in with opts. It never fails: what cannot be translated is refused in
// the returned status, and the rest is translated.
func Translate(in *Resources, opts Options) *Output {
	if in == nil {
		in = &Resources{}
	}
	t := newTranslation(in, opts.withDefaults())
	t.run()
	return t.out
}
