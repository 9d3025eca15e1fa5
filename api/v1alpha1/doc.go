// Package v1alpha1 holds the Go types of the agentgateway.dev/v1alpha1 API that mcpgate serves:
// AgentgatewayBackend and AgentgatewayPolicy. Field names and enums match agentgateway's own API so
// that manifests written for agentgateway apply verbatim. The enterprise policy kind, which shares
// the policy schema, lives in the enterprise subpackage because it belongs to another API group.
//
// +kubebuilder:object:generate=true
// +groupName=agentgateway.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of the types in this package.
var GroupVersion = schema.GroupVersion{Group: "agentgateway.dev", Version: "v1alpha1"}

// AddToScheme registers the types of this package with a runtime.Scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&AgentgatewayBackend{}, &AgentgatewayBackendList{},
		&AgentgatewayPolicy{}, &AgentgatewayPolicyList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
