// Package enterprise holds EnterpriseAgentgatewayPolicy (enterpriseagentgateway.solo.io/v1alpha1),
// which has the same schema as v1alpha1.AgentgatewayPolicy. mcpgate accepts it so that manifests
// written for Solo's enterprise gateway apply verbatim.
//
// +kubebuilder:object:generate=true
// +groupName=enterpriseagentgateway.solo.io
// +versionName=v1alpha1
package enterprise

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
)

// GroupVersion is the API group and version of the types in this package.
var GroupVersion = schema.GroupVersion{Group: "enterpriseagentgateway.solo.io", Version: "v1alpha1"}

// AddToScheme registers the types of this package with a runtime.Scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &EnterpriseAgentgatewayPolicy{}, &EnterpriseAgentgatewayPolicyList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// EnterpriseAgentgatewayPolicy is an AgentgatewayPolicy in Solo's enterprise API group.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=eagpol,categories=agentgateway
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.ancestors[0].conditions[?(@.type=="Accepted")].status`,description="Accepted condition of the first ancestor (usually a Gateway)"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:metadata:labels="gateway.networking.k8s.io/policy=Direct"
type EnterpriseAgentgatewayPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which objects the policy targets and what it enforces on their traffic (the
	// schema of AgentgatewayPolicy's).
	Spec v1alpha1.AgentgatewayPolicySpec `json:"spec"`
	// Status is written by the controller: per ancestor of the policy's targets, whether it is
	// Accepted.
	Status gwv1.PolicyStatus `json:"status,omitempty"`
}

// EnterpriseAgentgatewayPolicyList is a list of EnterpriseAgentgatewayPolicy.
//
// +kubebuilder:object:root=true
type EnterpriseAgentgatewayPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the policies listed.
	Items []EnterpriseAgentgatewayPolicy `json:"items"`
}

// AsAgentgatewayPolicy returns the policy as an AgentgatewayPolicy that keeps this kind's TypeMeta,
// so that code handling policies handles both kinds alike and still reports the right kind.
func (p *EnterpriseAgentgatewayPolicy) AsAgentgatewayPolicy() *v1alpha1.AgentgatewayPolicy {
	return &v1alpha1.AgentgatewayPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: GroupVersion.String(), Kind: "EnterpriseAgentgatewayPolicy"},
		ObjectMeta: p.ObjectMeta,
		Spec:       p.Spec,
		Status:     p.Status,
	}
}
