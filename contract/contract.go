// Package contract holds the names that mcpgate's parts agree on. The translator writes them into
// Envoy's configuration, xds and the bootstrap serve them, ext_proc reads them from its streams
// and writes them back as dynamic metadata for Envoy's access log. docs/design.md explains each.
package contract

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

// The MCP transports of MetadataMCP.
const (
	// TransportSSE is HTTP+SSE (MCP 2024-11-05): a GET stream and POSTs to its endpoint.
	TransportSSE = "sse"
	// TransportStreamableHTTP is Streamable HTTP: POST, GET and DELETE on one path.
	TransportStreamableHTTP = "streamable-http"
)

// MetadataNamespace is the dynamic metadata namespace ext_proc writes and Envoy's access log
// reads (%DYNAMIC_METADATA(mcpgate:FIELD)%).
const MetadataNamespace = "mcpgate"

// The fields of the MetadataNamespace dynamic metadata.
const (
	FieldGateway      = "gateway"
	FieldRoute        = "route"
	FieldBackend      = "backend"
	FieldTarget       = "target"
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
)

// Fields lists the fields of the MetadataNamespace dynamic metadata, in the order the access
// log shows them.
func Fields() []string {
	return []string{FieldGateway, FieldRoute, FieldBackend, FieldTarget, FieldSession, FieldSubject,
		FieldMethod, FieldTool, FieldArguments, FieldJSONRPCID, FieldDecision, FieldRule,
		FieldJSONRPCError, FieldAuthn}
}
