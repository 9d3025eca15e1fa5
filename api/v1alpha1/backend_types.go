package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// AgentgatewayBackend is a destination for AI traffic: a set of MCP servers, an LLM provider, or a
// static host.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=agbe,categories=agentgateway
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AgentgatewayBackend struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says what the backend is: exactly one of ai, static or mcp.
	Spec AgentgatewayBackendSpec `json:"spec"`
	// Status is the backend's observed state, written by the controller.
	Status AgentgatewayBackendStatus `json:"status,omitempty"`
}

// AgentgatewayBackendList is a list of AgentgatewayBackend.
//
// +kubebuilder:object:root=true
type AgentgatewayBackendList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the backends listed.
	Items []AgentgatewayBackend `json:"items"`
}

// AgentgatewayBackendSpec says what the backend is. Exactly one of its fields is set.
//
// +kubebuilder:validation:ExactlyOneOf=ai;static;mcp
type AgentgatewayBackendSpec struct {
	// AI is an LLM provider.
	// +optional
	AI *AIBackend `json:"ai,omitempty"`
	// Static is a plain host and port.
	// +optional
	Static *StaticBackend `json:"static,omitempty"`
	// MCP is a set of MCP servers.
	// +optional
	MCP *MCPBackend `json:"mcp,omitempty"`
	// Policies are settings applied to connections to this backend.
	// +optional
	Policies *BackendPolicies `json:"policies,omitempty"`
}

// StaticBackend is a host and a port.
type StaticBackend struct {
	// Host is a DNS name or an IP address.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host"`
	// Port is the TCP port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
}

// MCPBackend is a set of MCP servers, each a named target.
type MCPBackend struct {
	// Targets are the MCP servers of this backend.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=128
	// +listType=map
	// +listMapKey=name
	Targets []McpTargetSelector `json:"targets"`
	// SessionRouting says whether MCP sessions are kept on one upstream.
	// +kubebuilder:default=Stateful
	// +optional
	SessionRouting SessionRouting `json:"sessionRouting,omitempty"`
	// FailureMode says what happens when a target fails.
	// +kubebuilder:default=FailClosed
	// +optional
	FailureMode FailureMode `json:"failureMode,omitempty"`
	// PrefixMode says when tool names are prefixed with their target's name.
	// +kubebuilder:default=Conditional
	// +optional
	PrefixMode PrefixMode `json:"prefixMode,omitempty"`
}

// SessionRouting is Stateful or Stateless.
// +kubebuilder:validation:Enum=Stateful;Stateless
type SessionRouting string

// SessionRouting values.
const (
	SessionRoutingStateful  SessionRouting = "Stateful"
	SessionRoutingStateless SessionRouting = "Stateless"
)

// FailureMode is FailClosed or FailOpen.
// +kubebuilder:validation:Enum=FailClosed;FailOpen
type FailureMode string

// FailureMode values.
const (
	FailureModeFailClosed FailureMode = "FailClosed"
	FailureModeFailOpen   FailureMode = "FailOpen"
)

// PrefixMode is Conditional, Always or Never.
// +kubebuilder:validation:Enum=Conditional;Always;Never
type PrefixMode string

// PrefixMode values.
const (
	PrefixModeConditional PrefixMode = "Conditional"
	PrefixModeAlways      PrefixMode = "Always"
	PrefixModeNever       PrefixMode = "Never"
)

// McpTargetSelector is one MCP target: a static host, or the Services that a selector finds.
//
// +kubebuilder:validation:ExactlyOneOf=selector;static
type McpTargetSelector struct {
	// Name identifies the target in policies (mcp.tool.target), logs and metrics.
	Name gwv1.SectionName `json:"name"`
	// Selector finds Services whose ports have appProtocol agentgateway.dev/mcp or
	// agentgateway.dev/mcp-sse.
	// +optional
	Selector *McpSelector `json:"selector,omitempty"`
	// Static is one MCP server at a fixed host and port.
	// +optional
	Static *McpTarget `json:"static,omitempty"`
}

// McpSelector selects Services by label, in namespaces selected by label (default: the backend's
// own namespace).
//
// +kubebuilder:validation:XValidation:rule="has(self.namespaces) || has(self.services)",message="at least one of namespaces or services must be set"
type McpSelector struct {
	// Namespaces selects the namespaces to search. Unset means the backend's namespace.
	// +optional
	Namespaces *metav1.LabelSelector `json:"namespaces,omitempty"`
	// Services selects the Services.
	// +optional
	Services *metav1.LabelSelector `json:"services,omitempty"`
}

// McpTarget is an MCP server at a fixed address.
type McpTarget struct {
	// Host is a DNS name or an IP address.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host"`
	// Port is the TCP port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// Path is the MCP endpoint. It defaults to /sse for SSE and /mcp for StreamableHTTP.
	// +kubebuilder:validation:Pattern=`^/`
	// +optional
	Path string `json:"path,omitempty"`
	// Protocol is the MCP transport the server speaks. Unset means StreamableHTTP.
	// +optional
	Protocol MCPProtocol `json:"protocol,omitempty"`
	// Policies are settings for the connections to this target.
	// +optional
	Policies *McpTargetPolicies `json:"policies,omitempty"`
}

// McpTargetPolicies are settings for the connections to one MCP target.
type McpTargetPolicies struct {
	// TLS makes the gateway reach the target over TLS. Without it, a target on port 443 is still
	// reached over TLS, verified against the gateway's CA bundle and the target's host; any other
	// port is plaintext.
	// +optional
	TLS *BackendTLS `json:"tls,omitempty"`
}

// MCPProtocol is an MCP transport: SSE (HTTP+SSE, protocol 2024-11-05) or StreamableHTTP.
// +kubebuilder:validation:Enum=SSE;StreamableHTTP
type MCPProtocol string

// MCPProtocol values.
const (
	MCPProtocolSSE            MCPProtocol = "SSE"
	MCPProtocolStreamableHTTP MCPProtocol = "StreamableHTTP"
)

// AIBackend is an LLM provider.
type AIBackend struct {
	// Provider is the LLM provider.
	Provider *LLMProvider `json:"provider"`
}

// LLMProvider is an LLM provider: OpenAI, or an OpenAI-compatible server given by host, port and
// path.
type LLMProvider struct {
	// OpenAI selects the OpenAI API (api.openai.com unless host is set).
	// +required
	OpenAI *OpenAIConfig `json:"openai"`
	// Host overrides the provider's host (an OpenAI-compatible server).
	// +optional
	Host string `json:"host,omitempty"`
	// Port overrides the provider's port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
	// Path overrides the provider's path, e.g. /v1/chat/completions.
	// +optional
	Path string `json:"path,omitempty"`
}

// OpenAIConfig configures the OpenAI provider.
type OpenAIConfig struct {
	// Model overrides the model of every request.
	// +optional
	Model *string `json:"model,omitempty"`
}

// BackendPolicies are settings for connections to a backend.
type BackendPolicies struct {
	// Auth is the credential sent to the backend.
	// +optional
	Auth *BackendAuth `json:"auth,omitempty"`
	// TLS makes the gateway reach a static or AI backend over TLS. Without it, a backend on port
	// 443 is still reached over TLS, verified against the gateway's CA bundle and the backend's
	// host; any other port is plaintext. An MCP backend with it is refused: each static target
	// has its own, spec.mcp.targets[].static.policies.tls.
	// +optional
	TLS *BackendTLS `json:"tls,omitempty"`
}

// BackendTLS says how the gateway connects to a backend over TLS. The upstream certificate is
// verified against the gateway's CA bundle (the control plane's --upstream-ca-file, a path in the
// data plane's image) and, unless insecureSkipVerify says otherwise, against the backend's host
// or verifySubjectAltNames. The gateway rewrites the Host header of the requests it sends over TLS
// to the backend's host, as a server reached by its name expects.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.insecureSkipVerify) && has(self.verifySubjectAltNames))",message="insecureSkipVerify and verifySubjectAltNames may not be set together"
type BackendTLS struct {
	// SNI is the server name sent in the TLS handshake. Unset means the backend's host, or no
	// server name when the host is an IP address.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	SNI *string `json:"sni,omitempty"`
	// InsecureSkipVerify turns certificate verification off: All verifies nothing (any
	// certificate is accepted); Hostname verifies the certificate against the CA bundle but not
	// its names.
	// +optional
	InsecureSkipVerify *InsecureTLSMode `json:"insecureSkipVerify,omitempty"`
	// VerifySubjectAltNames are the names the upstream certificate must have one of, as a DNS
	// name or, for an IP address, an IP address subject alternative name. Unset means the
	// backend's host.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +optional
	VerifySubjectAltNames []string `json:"verifySubjectAltNames,omitempty"`
}

// InsecureTLSMode is how much of the upstream certificate's verification is skipped: All (no
// verification) or Hostname (the CA bundle is checked, the names are not).
// +kubebuilder:validation:Enum=All;Hostname
type InsecureTLSMode string

// InsecureTLSMode values.
const (
	InsecureTLSModeAll      InsecureTLSMode = "All"
	InsecureTLSModeHostname InsecureTLSMode = "Hostname"
)

// BackendAuth is the credential sent to a backend: exactly one of key, secretRef and
// passthrough (agentgateway's BackendAuth; its aws, gcp and azure are not served, and a manifest
// that sets them is refused naming the field).
//
// +kubebuilder:validation:XValidation:rule="(has(self.key) ? 1 : 0) + (has(self.secretRef) ? 1 : 0) + (has(self.passthrough) ? 1 : 0) == 1",message="exactly one of key, secretRef and passthrough must be set"
type BackendAuth struct {
	// Key is the value of the Authorization header, inline (a bare key gets "Bearer " in
	// front). It is the least secure way: anyone who can read the resource reads the key; a
	// Secret (secretRef) is preferred. mcpgate never prints it (translate output and debug
	// dumps redact it). At most 2048 characters.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	Key *string `json:"key,omitempty"`
	// SecretRef names a Secret in the namespace of the object that sets it (the backend's, or
	// the policy's) whose key "Authorization" holds the value of the Authorization header (a
	// bare key gets "Bearer " in front).
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`
	// Passthrough forwards the caller's token to the backend: the Authorization header that JWT
	// authentication (spec.traffic.jwtAuthentication) validated, which it otherwise removes
	// before the request goes on, is kept. Without JWT authentication on the route the header is
	// not removed anyway, so passthrough changes nothing.
	// +optional
	Passthrough *BackendAuthPassthrough `json:"passthrough,omitempty"`
}

// BackendAuthPassthrough forwards the caller's validated token to the backend: ext_proc keeps
// the Authorization header that JWT authentication would otherwise remove.
type BackendAuthPassthrough struct{}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// Name of the object.
	Name string `json:"name"`
}

// AgentgatewayBackendStatus is the observed state of a backend.
type AgentgatewayBackendStatus struct {
	// Conditions: Accepted.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}
