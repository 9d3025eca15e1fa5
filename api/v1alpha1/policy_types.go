package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// AgentgatewayPolicy attaches authentication, authorization and rate limits to Gateways, HTTPRoutes and
// AgentgatewayBackends.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=agpol,categories=agentgateway
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.ancestors[0].conditions[?(@.type=="Accepted")].status`,description="Accepted condition of the first ancestor (usually a Gateway)"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:metadata:labels="gateway.networking.k8s.io/policy=Direct"
type AgentgatewayPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which objects the policy targets and what it enforces on their traffic.
	Spec AgentgatewayPolicySpec `json:"spec"`
	// Status is written by the controller: per ancestor of the policy's targets, whether it is
	// Accepted.
	Status gwv1.PolicyStatus `json:"status,omitempty"`
}

// AgentgatewayPolicyList is a list of AgentgatewayPolicy.
//
// +kubebuilder:object:root=true
type AgentgatewayPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the policies listed.
	Items []AgentgatewayPolicy `json:"items"`
}

// AgentgatewayPolicySpec is the policy schema shared by AgentgatewayPolicy and
// EnterpriseAgentgatewayPolicy.
//
// +kubebuilder:validation:XValidation:rule="has(self.traffic) || has(self.backend)",message="at least one of traffic or backend must be set"
type AgentgatewayPolicySpec struct {
	// TargetRefs are the objects the policy applies to: Gateways, HTTPRoutes or
	// AgentgatewayBackends.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	TargetRefs []PolicyTargetReference `json:"targetRefs"`
	// Traffic applies to the HTTP requests of the targets.
	// +optional
	Traffic *TrafficPolicy `json:"traffic,omitempty"`
	// Backend applies to the backend traffic of the targets: its credential (auth) and MCP rules.
	// +optional
	Backend *BackendPolicy `json:"backend,omitempty"`
}

// PolicyTargetReference names an object the policy applies to, in the policy's namespace.
//
// +kubebuilder:validation:XValidation:rule="(self.group == 'gateway.networking.k8s.io' && (self.kind == 'Gateway' || self.kind == 'HTTPRoute')) || (self.group == 'agentgateway.dev' && self.kind == 'AgentgatewayBackend')",message="targetRefs must name a Gateway or HTTPRoute (group gateway.networking.k8s.io) or an AgentgatewayBackend (group agentgateway.dev)"
type PolicyTargetReference struct {
	// Group of the target.
	Group gwv1.Group `json:"group"`
	// Kind of the target.
	Kind gwv1.Kind `json:"kind"`
	// Name of the target.
	Name gwv1.ObjectName `json:"name"`
	// SectionName is a Gateway listener name or an HTTPRoute rule name.
	// +optional
	SectionName *gwv1.SectionName `json:"sectionName,omitempty"`
}

// TrafficPolicy applies to the HTTP requests of a policy's targets.
type TrafficPolicy struct {
	// JWTAuthentication authenticates callers with JSON Web Tokens.
	// +optional
	JWTAuthentication *JWTAuthentication `json:"jwtAuthentication,omitempty"`
	// Authorization allows or denies requests with CEL expressions. A denied request gets 403.
	// +optional
	Authorization *Authorization `json:"authorization,omitempty"`
	// RateLimit limits the rate of the targets' requests (agentgateway's traffic.rateLimit).
	// +optional
	RateLimit *RateLimitPolicy `json:"rateLimit,omitempty"`
}

// RateLimitPolicy limits the rate of requests. Only local limits exist in mcpgate:
// agentgateway's global (a rate limit service) is not part of this API.
type RateLimitPolicy struct {
	// Local are token buckets kept by each gateway replica on its own: over the limit a request
	// gets 429. mcpgate applies one entry with requests (Envoy's local rate limit filter: a
	// Gateway's is one bucket per port and replica, a more specific one a bucket per Envoy route
	// and replica); more than one, and tokens, are refused by the translator.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Local []LocalRateLimit `json:"local"`
}

// LocalRateLimit is a token bucket: Requests (or Tokens) per Unit, plus Burst.
//
// +kubebuilder:validation:ExactlyOneOf=requests;tokens
type LocalRateLimit struct {
	// Requests is how many requests a Unit admits; the bucket refills at this rate.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Requests *int32 `json:"requests,omitempty"`
	// Tokens is an LLM token budget per Unit (agentgateway). Accepted by the schema for
	// compatibility; refused by mcpgate's translator, which limits requests only.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Tokens *int32 `json:"tokens,omitempty"`
	// Unit is the period of Requests: Seconds, Minutes or Hours.
	Unit RateLimitUnit `json:"unit"`
	// Burst is how many requests beyond Requests the bucket holds when full (default 0).
	// +kubebuilder:validation:Minimum=0
	// +optional
	Burst *int32 `json:"burst,omitempty"`
}

// RateLimitUnit is the period of a local rate limit.
// +kubebuilder:validation:Enum=Seconds;Minutes;Hours
type RateLimitUnit string

// RateLimitUnit values.
const (
	RateLimitUnitSeconds RateLimitUnit = "Seconds"
	RateLimitUnitMinutes RateLimitUnit = "Minutes"
	RateLimitUnitHours   RateLimitUnit = "Hours"
)

// JWTAuthentication authenticates callers with a JWT from the Authorization: Bearer header.
//
// +kubebuilder:validation:XValidation:rule="!has(self.mcp) || !has(self.mode) || self.mode == 'Strict'",message="jwtAuthentication.mcp requires mode Strict"
type JWTAuthentication struct {
	// Mode says what happens to requests without a valid token.
	// +kubebuilder:default=Strict
	// +optional
	Mode JWTMode `json:"mode,omitempty"`
	// Providers are the accepted token issuers.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Providers []JWTProvider `json:"providers"`
	// MCP makes the gateway an OAuth 2.0 protected resource as the MCP authorization
	// specification asks: it serves Protected Resource Metadata (RFC 9728) at
	// /.well-known/oauth-protected-resource[/PATH] of the routes the policy applies to, and its
	// 401 answers name that metadata (WWW-Authenticate resource_metadata). It requires mode
	// Strict and exactly one provider, whose issuer is the metadata's authorization server.
	// +optional
	MCP *JWTMCPConfig `json:"mcp,omitempty"`
}

// JWTMCPConfig is the MCP OAuth discovery of a JWT authentication (agentgateway's
// jwtAuthentication.mcp).
type JWTMCPConfig struct {
	// ResourceMetadata are further members of the Protected Resource Metadata served at the MCP
	// OAuth metadata endpoints (for example scopes_supported, resource_name). resource and
	// authorization_servers are set by the gateway and refused here; bearer_methods_supported
	// defaults to ["header"].
	// +optional
	ResourceMetadata map[string]apiextensionsv1.JSON `json:"resourceMetadata,omitempty"`
	// Provider is the identity provider whose authorization-server metadata and client
	// registration agentgateway adapts. Not supported by mcpgate (refused): it does not proxy
	// the authorization server; MCP clients use the issuer's own metadata.
	// +kubebuilder:validation:Enum=Auth0;Keycloak;Okta
	// +optional
	Provider *McpIDP `json:"provider,omitempty"`
	// ClientID short-circuits Dynamic Client Registration in agentgateway. Not supported by
	// mcpgate (refused): it does not proxy client registration.
	// +optional
	ClientID *string `json:"clientId,omitempty"`
}

// McpIDP is an identity provider agentgateway adapts for MCP authentication flows.
type McpIDP string

// McpIDP values.
const (
	McpIDPAuth0    McpIDP = "Auth0"
	McpIDPKeycloak McpIDP = "Keycloak"
	McpIDPOkta     McpIDP = "Okta"
)

// JWTMode is Strict (a valid token is required), Optional (no token passes, an invalid token is
// refused) or Permissive (never refuses).
// +kubebuilder:validation:Enum=Strict;Optional;Permissive
type JWTMode string

// JWTMode values.
const (
	JWTModeStrict     JWTMode = "Strict"
	JWTModeOptional   JWTMode = "Optional"
	JWTModePermissive JWTMode = "Permissive"
)

// JWTProvider is a token issuer and its keys.
type JWTProvider struct {
	// Issuer must equal the token's iss claim.
	// +kubebuilder:validation:MinLength=1
	Issuer string `json:"issuer"`
	// Audiences, if set, must contain one of the token's aud values. Unset accepts any audience.
	// +optional
	Audiences []string `json:"audiences,omitempty"`
	// JWKS holds the issuer's public keys.
	JWKS JWKS `json:"jwks"`
}

// JWKS is a JSON Web Key Set, inline or fetched from a URL.
//
// +kubebuilder:validation:ExactlyOneOf=inline;remote
type JWKS struct {
	// Inline is the key set as JSON.
	// +optional
	Inline *string `json:"inline,omitempty"`
	// Remote fetches the key set from a URL.
	// +optional
	Remote *RemoteJWKS `json:"remote,omitempty"`
}

// RemoteJWKS is a key set fetched over HTTP(S) and cached.
type RemoteJWKS struct {
	// URL of the key set.
	// +kubebuilder:validation:Pattern=`^https?://`
	URL string `json:"url"`
	// CacheDuration is how long fetched keys are used before they are fetched again (at least
	// 5m, so that a key set's server is not polled hard).
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5m')",message="must be at least 5m"
	// +optional
	CacheDuration *metav1.Duration `json:"cacheDuration,omitempty"`
}

// Authorization is a list of CEL expressions and what a match means.
type Authorization struct {
	// Action: Allow (a match allows; with Allow rules present, no match denies), Deny (a match
	// denies) or Require (no match denies).
	// +kubebuilder:default=Allow
	// +optional
	Action AuthorizationAction `json:"action,omitempty"`
	// Policy holds the expressions.
	Policy AuthorizationPolicy `json:"policy"`
}

// AuthorizationAction is Allow, Deny or Require.
// +kubebuilder:validation:Enum=Allow;Deny;Require
type AuthorizationAction string

// AuthorizationAction values.
const (
	AuthorizationActionAllow   AuthorizationAction = "Allow"
	AuthorizationActionDeny    AuthorizationAction = "Deny"
	AuthorizationActionRequire AuthorizationAction = "Require"
)

// AuthorizationPolicy holds CEL expressions, each a separate rule.
type AuthorizationPolicy struct {
	// MatchExpressions are CEL expressions over jwt, request, mcp and source.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	MatchExpressions []CELExpression `json:"matchExpressions"`
}

// CELExpression is a CEL expression that evaluates to a bool.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=16384
type CELExpression string

// BackendPolicy applies to the backend traffic of a policy's targets.
type BackendPolicy struct {
	// Auth is the credential sent to the backends of the targets' routes (agentgateway's
	// BackendSimple auth). An AgentgatewayBackend's own spec.policies.auth takes precedence;
	// among policies, the most specific target's (backend, rule, HTTPRoute, listener, Gateway)
	// applies, the oldest policy's within one target.
	// +optional
	Auth *BackendAuth `json:"auth,omitempty"`
	// MCP applies to MCP methods.
	// +optional
	MCP *BackendMCP `json:"mcp,omitempty"`
}

// BackendMCP is MCP-level policy.
type BackendMCP struct {
	// Authorization filters tools/list and refuses tools/call by tool.
	// +optional
	Authorization *Authorization `json:"authorization,omitempty"`
}
