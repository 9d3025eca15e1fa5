// Package contract holds the names that mcpgate's parts agree on. The translator writes them into
// Envoy's configuration (also as route and cluster metadata for the access log), xds and the
// bootstrap serve them, ext_proc reads them from its streams and writes the per-request fields as
// dynamic metadata for Envoy's access log. docs/design.md explains each.
package contract

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// xDS.
const (
	// PolicyTypeURL is the type URL of mcpgate's policy resource (proto/policy/v1), served to
	// ext_proc over the same ADS server as Envoy's resources.
	PolicyTypeURL = "type.googleapis.com/mcpgate.policy.v1.Policy"
	// AllGateways is the node group (node.cluster) that holds the policies of every gateway, for
	// an ext_proc serving them all. Any other group is a Gateway's "NAMESPACE/NAME".
	AllGateways = "*"
	// XDSCluster is the bootstrap's static cluster of the xDS server.
	XDSCluster = "mcpgate_xds"
	// ExtProcCluster is the bootstrap's static cluster of the ext_proc service.
	ExtProcCluster = "mcpgate_extproc"
)

// The gRPC initial metadata a route sets on its ext_proc stream (ExtProcPerRoute
// overrides.grpc_initial_metadata). A missing key means "not applicable".
const (
	// MetadataGateway is the Gateway, "NAMESPACE/NAME".
	MetadataGateway = "x-mcpgate-gateway"
	// MetadataRoute is the HTTPRoute rule, "NAMESPACE/NAME/rule/I".
	MetadataRoute = "x-mcpgate-route"
	// MetadataPolicy names the Policy resource that applies; missing means none.
	MetadataPolicy = "x-mcpgate-policy"
	// MetadataMCP is the MCP transport of the target (TransportSSE or TransportStreamableHTTP);
	// missing means the route is not MCP.
	MetadataMCP = "x-mcpgate-mcp"
	// MetadataBackend is the AgentgatewayBackend, "NAMESPACE/NAME".
	MetadataBackend = "x-mcpgate-backend"
	// MetadataTarget is the MCP target's name.
	MetadataTarget = "x-mcpgate-target"
)

// MetadataTargets, set only on a route to a multiplexed AgentgatewayBackend (several MCP targets
// behind the mux, docs/design.md "Multiplexing"), lists the targets' names in spec order, joined
// by commas. Its presence means that the route's tool and prompt names are "TARGET_name" and its
// resource URIs "TARGET+uri"; MetadataTarget is then absent.
const MetadataTargets = "x-mcpgate-targets"

// MetadataMux, set only on a route to a multiplexed backend under prefixMode Never (with
// MetadataTargets), is the backend's Mux as compact JSON, the value of the route's HeaderMux:
// under Never tool and prompt names are bare, so ext_proc resolves the target of a call itself
// (mux.Server.Resolve lists the session's targets) before it judges it, and tells the mux
// (HeaderMuxTarget). Resource URIs stay "TARGET+uri".
const MetadataMux = "x-mcpgate-mux"

// MetadataBridge, set only on a route that bridges a client's Streamable HTTP to a single target
// of another transport through the mux (Mux.Bridge), is the target's transport (TransportSSE).
// The route goes to the mux as a multiplexed route does (ext_proc sets HeaderMuxAuth), but its
// names are the target's own: MetadataTarget names the target, MetadataTargets is absent, and
// MetadataMCP is the client's transport (TransportStreamableHTTP).
const MetadataBridge = "x-mcpgate-bridge"

// MetadataPassthrough, set only on a route whose backendRef's credential is backend auth
// passthrough (AgentgatewayBackend spec.policies.auth.passthrough, AgentgatewayPolicy
// spec.backend.auth.passthrough), is PassthroughOn: ext_proc keeps the caller's Authorization
// header after JWT authentication validated it, where it otherwise removes it, so that the
// backend receives the caller's token.
const MetadataPassthrough = "x-mcpgate-passthrough"

// PassthroughOn is MetadataPassthrough's value.
const PassthroughOn = "true"

// MCP multiplexing: the mux (package extproc/mux) serves a multiplexed backend's routes and
// reaches each target back through Envoy's mux upstream listener.
const (
	// MuxCluster is the bootstrap's static cluster of the mux server.
	MuxCluster = "mcpgate_mux"
	// MuxUpstreamListener is the bootstrap's static listener (on a Unix socket, no ext_proc) that
	// the mux sends each target's requests to.
	MuxUpstreamListener = "mcpgate_mux_upstream"
	// MuxUpstreamRoutes is the RouteConfiguration of MuxUpstreamListener, served per Gateway
	// over ADS: a route per multiplexed target cluster, matched on HeaderMuxCluster.
	MuxUpstreamRoutes = "mcpgate/mux-upstream"
	// HeaderMux is the request header a multiplexed route adds (overwriting a client's) for the
	// mux: a Mux as compact JSON.
	HeaderMux = "x-mcpgate-mux"
	// HeaderMuxCluster is the request header the mux sets on a target's request: the cluster
	// MuxUpstreamRoutes routes it to. The route removes it.
	HeaderMuxCluster = "x-mcpgate-cluster"
	// HeaderMuxAuth is the request header ext_proc sets (overwriting a client's) on the routes of
	// a multiplexed backend (MetadataTargets) to the secret it shares with the mux of its process:
	// the mux serves no request without it, so that only requests the front hop authorized
	// reach the targets through the mux upstream listener. The mux drops it.
	HeaderMuxAuth = "x-mcpgate-mux-auth"
	// HeaderMuxTarget is the request header ext_proc sets on a call (tools/call, prompts/get,
	// completion/complete of a prompt) on a route under prefixMode Never (MetadataMux): the target
	// it resolved the bare name to and judged the call as. The mux routes the call by it (trusted:
	// the request carries HeaderMuxAuth) and drops it. ext_proc removes a client's value on every
	// route with MetadataTargets.
	HeaderMuxTarget = "x-mcpgate-mux-target"
	// HeaderMuxCaller is the request header ext_proc sets (overwriting a client's) on the routes
	// to the mux (MetadataTargets, MetadataBridge): an opaque name of the caller, by which the mux
	// bounds the sessions it holds for one caller (mux.Options.MaxSSESessionsPerCaller). It is
	// the base64url of 16 bytes of an HMAC under the session key (bind.Binder.CallerID) of the
	// verified token's issuer and subject, or, without one, of the client's source address: never
	// the token or the subject in clear. The mux trusts it on a request with HeaderMuxAuth only,
	// and drops it. ext_proc removes a client's value on every other route.
	HeaderMuxCaller = "x-mcpgate-caller"
	// MetaTarget is the _meta key of each tool and prompt of a merged list under prefixMode Never:
	// the target that serves it (the mux overwrites a target's own value), which the front hop
	// judges the item as.
	MetaTarget = "mcpgate.dev/target"
)

// PrefixModeNever is Mux.PrefixMode under which tool and prompt names are bare.
const PrefixModeNever = "Never"

// The failure modes of a multiplexed backend (Mux.FailureMode, spec.mcp.failureMode).
const (
	// FailClosed: a target that fails fails the request (the default; "" means it too).
	FailClosed = "FailClosed"
	// FailOpen: a target that fails is left out; the request fails only when every target does.
	FailOpen = "FailOpen"
)

// Mux describes a multiplexed AgentgatewayBackend to the mux (HeaderMux).
type Mux struct {
	// Gateway is the Gateway, "NAMESPACE/NAME": the mux reaches its Envoy's mux upstream listener.
	Gateway string `json:"gateway"`
	// Backend is the AgentgatewayBackend, "NAMESPACE/NAME".
	Backend string `json:"backend"`
	// PrefixMode is the backend's spec.mcp.prefixMode: Conditional or Always (tool and prompt
	// names TARGET_name), or Never (PrefixModeNever: bare names, a call's target resolved by
	// ext_proc and named by HeaderMuxTarget; a name several targets serve is left out of the
	// lists). Resource URIs are TARGET+uri in every mode.
	PrefixMode string `json:"prefixMode"`
	// FailureMode is the backend's spec.mcp.failureMode: FailClosed or FailOpen ("": FailClosed).
	FailureMode string `json:"failureMode"`
	// Targets are the backend's targets in spec order.
	Targets []MuxTarget `json:"targets"`
	// Bridge: the backend has one target, which the mux serves in its own transport (an SSE
	// target to a Streamable HTTP client) and otherwise passes through: tool and prompt names
	// and resource URIs unchanged, whatever PrefixMode says (MetadataBridge).
	Bridge bool `json:"bridge,omitempty"`
	// RequestHeaders, only in a Never route's MetadataMux (not in HeaderMux), are the request
	// header changes of the route's HTTPRoute rule (its RequestHeaderModifier), which Envoy's
	// router applies to the call after ext_proc, on its way to the mux. ext_proc's resolver
	// (mux.Server.Resolve) lists the targets with the headers ext_proc saw: it applies them
	// first, as the router does (HeaderChanges.Apply), so that the targets see the headers the
	// call will bring them. nil when the rule changes none.
	RequestHeaders *HeaderChanges `json:"requestHeaders,omitempty"`
	// Host, only in a Never route's MetadataMux, is the host the route's URLRewrite sets
	// (host_rewrite_literal, applied by the router after ext_proc): the resolver's lists carry it
	// as the call will. "" when the rule rewrites none.
	Host string `json:"host,omitempty"`
}

// MaxMetadataValue is the longest value of an ext_proc grpc_initial_metadata entry Envoy takes
// (HeaderValue.value, max_bytes 16384): a longer one is refused with the whole
// RouteConfiguration.
const MaxMetadataValue = 16384

// HeaderChanges are an HTTPRoute rule's request header changes as Envoy's router applies them
// (route request_headers_to_remove and request_headers_to_add, Envoy's
// HeaderParser::evaluateHeaders; translator/ENVOY.md): every Remove first, then every set (Append
// false) in order, then every append (Append true) in order. Values are literal.
type HeaderChanges struct {
	// Remove are the header names removed (RequestHeaderModifier remove).
	Remove []string `json:"remove,omitempty"`
	// Add are the headers set (Append false: RequestHeaderModifier set, every value of the
	// header replaced) or appended (Append true: RequestHeaderModifier add, one value more), in
	// the order of the route's request_headers_to_add.
	Add []HeaderAdd `json:"add,omitempty"`
}

// HeaderAdd is one header a route sets or appends.
type HeaderAdd struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Append bool   `json:"append,omitempty"`
}

// Apply applies the changes to h as Envoy's router applies them to a request: removes first,
// then the sets (each replacing every value of its header), then the appends; a header whose
// value is empty is neither set nor appended (Envoy skips it without keep_empty_value, which
// mcpgate does not set). Names are compared case-insensitively (h's keys canonical, as
// http.Header's methods keep them).
func (c *HeaderChanges) Apply(h http.Header) {
	if c == nil {
		return
	}
	for _, n := range c.Remove {
		h.Del(n)
	}
	for _, a := range c.Add {
		if !a.Append && a.Value != "" {
			h.Set(a.Name, a.Value)
		}
	}
	for _, a := range c.Add {
		if a.Append && a.Value != "" {
			h.Add(a.Name, a.Value)
		}
	}
}

// MuxSeparators are the characters a multiplexed target's name may not hold: "_" ends the prefix
// of a tool or prompt name, "+" that of a resource URI, "," separates MetadataTargets' names and
// ":" the target from the id in a server request's id the mux rewrites.
const MuxSeparators = "_+,:"

// Check says what makes t unfit for the mux, or nil.
func (t MuxTarget) Check() error {
	switch {
	case t.Name == "" || strings.ContainsAny(t.Name, MuxSeparators):
		return fmt.Errorf("name %q: want a name without any of %q", t.Name, MuxSeparators)
	case t.Cluster == "":
		return errors.New("cluster: empty")
	case !strings.HasPrefix(t.Path, "/"):
		return fmt.Errorf("path %q: want an absolute path", t.Path)
	}
	return nil
}

// MuxTarget is one target of a Mux.
type MuxTarget struct {
	// Name is the target's name, the prefix of its tools.
	Name string `json:"name"`
	// Cluster is the target's Envoy cluster (the value of HeaderMuxCluster).
	Cluster string `json:"cluster"`
	// Path is the target's path: its Streamable HTTP endpoint, or the GET stream of an SSE
	// target.
	Path string `json:"path"`
	// Protocol is the target's transport: TransportSSE (HTTP+SSE: the mux holds the target's GET
	// stream for the session and posts to the endpoint it announces), or "" for Streamable HTTP.
	Protocol string `json:"protocol,omitempty"`
}

// The MCP transports of MetadataMCP.
const (
	// TransportSSE is HTTP+SSE (MCP 2024-11-05): a GET stream and POSTs to its endpoint.
	TransportSSE = "sse"
	// TransportStreamableHTTP is Streamable HTTP: POST, GET and DELETE on one path.
	TransportStreamableHTTP = "streamable-http"
)

// MetadataNamespace is the filter namespace of mcpgate's metadata: the dynamic metadata ext_proc
// writes for each request, and the metadata.filter_metadata the translator sets on each Route and
// Cluster. Envoy's access log reads the fields from all three (%METADATA(TYPE:mcpgate:FIELD)%).
const MetadataNamespace = "mcpgate"

// MetadataSource is where a field of the MetadataNamespace is set. Its value is the TYPE of
// Envoy's %METADATA(TYPE:NAMESPACE:KEY)% access log command operator that reads it.
type MetadataSource string

// The sources of the fields.
const (
	// FromRoute fields are constant per route: the translator sets them in each Route's
	// metadata.filter_metadata, also on routes without ext_proc.
	FromRoute MetadataSource = "ROUTE"
	// FromCluster fields are constant per cluster (an MCP target, a backend or a Service port):
	// the translator sets them in each Cluster's metadata.filter_metadata. A weighted rule has
	// several clusters, so the route cannot hold them. Envoy's access log reads the upstream
	// cluster, picked with the route: none when no cluster was picked or it does not exist.
	FromCluster MetadataSource = "CLUSTER"
	// FromExtProc fields vary per request: ext_proc writes them into the request's dynamic
	// metadata. ext_proc knows the route's and cluster's fields too (from the route's gRPC initial
	// metadata, Metadata*) for its audit line, metrics and spans, but does not send them back
	// (every reply is smaller), except those whose Fallback it is.
	FromExtProc MetadataSource = "DYNAMIC"
)

// The fields of the MetadataNamespace.
const (
	FieldGateway      = "gateway"       // FromRoute: the Gateway, "NAMESPACE/NAME"
	FieldRoute        = "route"         // FromRoute: the HTTPRoute rule, "NAMESPACE/NAME/rule/I"
	FieldBackend      = "backend"       // FromCluster, else FromExtProc: the AgentgatewayBackend, "NAMESPACE/NAME"
	FieldTarget       = "target"        // FromCluster, else FromExtProc: the MCP target's name
	FieldSession      = "session"       // Mcp-Session-Id, or the legacy SSE sessionId
	FieldSubject      = "subject"       // the JWT's sub
	FieldMethod       = "method"        // the JSON-RPC method
	FieldTool         = "tool"          // the tool of tools/call
	FieldArguments    = "arguments"     // the tool's arguments as JSON, redacted and truncated
	FieldJSONRPCID    = "jsonrpc_id"    // the JSON-RPC id as JSON
	FieldDecision     = "decision"      // allow or deny
	FieldRule         = "rule"          // the source of the rule that decided
	FieldJSONRPCError = "jsonrpc_error" // the JSON-RPC error code of the answer
	FieldAuthn        = "authn"         // the outcome of JWT authentication
	FieldOutcome      = "outcome"       // the MCP exchange's outcome: result, error, tool_error, refused
)

// Field is a field of the MetadataNamespace and where it is set.
type Field struct {
	// Name is the field's key in the MetadataNamespace, one of the Field* constants.
	Name string
	// Source is where the field is set, and so the TYPE the access log reads it with.
	Source MetadataSource
	// Fallback, when not "", is where the field is set for the requests whose Source has none.
	// The backend and target of a multiplexed backend's front hop (docs/design.md,
	// Multiplexing): its cluster is the bootstrap's MuxCluster, which holds neither, and the
	// target is the one the request's item names (its prefix; a bridge route's own target), so
	// ext_proc writes both, as its audit line has them, on the routes with MetadataTargets or
	// MetadataBridge only.
	Fallback MetadataSource
}

// Fields lists the fields of the MetadataNamespace, in the order the access log shows them.
func Fields() []Field {
	return []Field{{FieldGateway, FromRoute, ""}, {FieldRoute, FromRoute, ""}, {FieldBackend, FromCluster, FromExtProc},
		{FieldTarget, FromCluster, FromExtProc}, {FieldSession, FromExtProc, ""}, {FieldSubject, FromExtProc, ""},
		{FieldMethod, FromExtProc, ""}, {FieldTool, FromExtProc, ""}, {FieldArguments, FromExtProc, ""},
		{FieldJSONRPCID, FromExtProc, ""}, {FieldDecision, FromExtProc, ""}, {FieldRule, FromExtProc, ""},
		{FieldJSONRPCError, FromExtProc, ""}, {FieldAuthn, FromExtProc, ""}, {FieldOutcome, FromExtProc, ""}}
}

// SplitAddress splits an address as mcpgate's flags and parts take them, "unix:///PATH" (an
// absolute path: a relative one would depend on each process's working folder) or "HOST:PORT"
// (HOST may be empty: every address; PORT 0 to 65535), into the network and address that
// net.Dial and net.Listen take: ("unix", "/PATH") or ("tcp", "HOST:PORT"). The error does not
// repeat addr: the caller names it.
func SplitAddress(addr string) (network, address string, err error) {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		if !strings.HasPrefix(path, "/") {
			return "", "", errors.New("want unix:///ABSOLUTE/PATH")
		}
		return "unix", path, nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", errors.New("want HOST:PORT or unix:///PATH")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", "", fmt.Errorf("port %q: want 0 to 65535", port)
	}
	return "tcp", addr, nil
}

// ExtProcAttributes is the key of ProcessingRequest.attributes under which Envoy's ext_proc filter
// sends the request_attributes it evaluated (a Struct keyed by the expression text).
const ExtProcAttributes = "envoy.filters.http.ext_proc"

// The request_attributes of the ext_proc filter. AttrSourceAddress is requested on every
// listener; the peer certificate ones only on the HTTPS filter chains whose client certificates
// Envoy verifies (Gateway spec.tls.frontend, mode AllowValidOnly): there the handshake fails
// without a certificate that chains to a trusted CA, so a certificate Envoy describes is a
// verified one. Envoy evaluates each as a CEL attribute and sends a string, or nothing when the
// connection has no such value (no TLS, no certificate, no URI or DNS SAN).
const (
	AttrSourceAddress = "source.address"
	// AttrPeerSubject is the certificate's subject as Envoy prints it (RFC 2253, most
	// specific RDN first: "CN=client,O=example").
	AttrPeerSubject = "connection.subject_peer_certificate"
	// AttrPeerURISAN is the certificate's first URI SAN.
	AttrPeerURISAN = "connection.uri_san_peer_certificate"
	// AttrPeerDNSSAN is the certificate's first DNS SAN.
	AttrPeerDNSSAN = "connection.dns_san_peer_certificate"
	// AttrPeerSHA256 is the SHA-256 digest of the certificate (DER), lower-case hex.
	AttrPeerSHA256 = "connection.sha256_peer_certificate_digest"
)

// PeerCertificateAttributes returns the request_attributes of a filter chain that verifies
// client certificates, in order (AttrSourceAddress first, as on every listener).
func PeerCertificateAttributes() []string {
	return []string{AttrSourceAddress, AttrPeerSubject, AttrPeerURISAN, AttrPeerDNSSAN, AttrPeerSHA256}
}
