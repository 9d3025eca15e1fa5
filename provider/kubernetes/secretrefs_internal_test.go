package kubernetes

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/translator"
)

// TestSecretRefsGranted: the certificate Secrets read for a served Gateway (its listeners' and
// its backend client certificate) are those of its own namespace and those another namespace's
// ReferenceGrant lets its Gateways name; a Gateway of a class not served names none.
func TestSecretRefsGranted(t *testing.T) {
	ns := func(s string) *gwv1.Namespace { n := gwv1.Namespace(s); return &n }
	gateway := func(name, class string) *gwv1.Gateway {
		return &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name}, Spec: gwv1.GatewaySpec{
			GatewayClassName: gwv1.ObjectName(class),
			Listeners: []gwv1.Listener{{Name: "https", Port: 443, Protocol: gwv1.HTTPSProtocolType, TLS: &gwv1.ListenerTLSConfig{
				CertificateRefs: []gwv1.SecretObjectReference{{Name: "own"}, {Name: "shared", Namespace: ns("certs")}, {Name: "other", Namespace: ns("secrets")}},
			}}},
		}}
	}
	withClientCert := func(g *gwv1.Gateway, ref gwv1.SecretObjectReference) *gwv1.Gateway {
		g.Name += "-" + string(ref.Name)
		g.Spec.Listeners = g.Spec.Listeners[:0]
		g.Spec.TLS = &gwv1.GatewayTLSConfig{Backend: &gwv1.GatewayBackendTLS{ClientCertificateRef: &ref}}
		return g
	}
	res := &translator.Resources{
		GatewayClasses: []*gwv1.GatewayClass{
			{ObjectMeta: metav1.ObjectMeta{Name: "ours"}, Spec: gwv1.GatewayClassSpec{ControllerName: translator.DefaultControllerName}},
			{ObjectMeta: metav1.ObjectMeta{Name: "theirs"}, Spec: gwv1.GatewayClassSpec{ControllerName: "example.com/other"}},
		},
		Gateways: []*gwv1.Gateway{gateway("served", "ours"), gateway("not-served", "theirs"),
			withClientCert(gateway("served", "ours"), gwv1.SecretObjectReference{Name: "client"}),
			withClientCert(gateway("served", "ours"), gwv1.SecretObjectReference{Name: "shared-client", Namespace: ns("certs")}),
			withClientCert(gateway("served", "ours"), gwv1.SecretObjectReference{Name: "other-client", Namespace: ns("secrets")}),
			withClientCert(gateway("not-served", "theirs"), gwv1.SecretObjectReference{Name: "theirs-client"})},
		ReferenceGrants: []*gwv1.ReferenceGrant{{ObjectMeta: metav1.ObjectMeta{Namespace: "certs", Name: "gateways"}, Spec: gwv1.ReferenceGrantSpec{
			From: []gwv1.ReferenceGrantFrom{{Group: gwv1.GroupName, Kind: "Gateway", Namespace: "apps"}},
			To:   []gwv1.ReferenceGrantTo{{Group: "", Kind: "Secret"}},
		}}},
	}
	var got []string
	for _, r := range secretRefs(res, translator.Options{RequireGatewayClass: true}) {
		got = append(got, r.key.String()+" "+r.owner+" "+r.field)
	}
	want := []string{
		"apps/own Gateway apps/served spec.listeners[0].tls.certificateRefs[0]",
		"certs/shared Gateway apps/served spec.listeners[0].tls.certificateRefs[1]",
		"apps/client Gateway apps/served-client spec.tls.backend.clientCertificateRef",
		"certs/shared-client Gateway apps/served-shared-client spec.tls.backend.clientCertificateRef",
	}
	if !slices.Equal(got, want) {
		t.Errorf("secret refs:\n%q\nwant\n%q", got, want)
	}
}

// TestSecretRefsOfAuth: the Secrets that backend auth names are read from the naming object's
// namespace: an AgentgatewayBackend's spec.policies.auth.secretRef and a policy's (either kind)
// spec.backend.auth.secretRef; a policy whose auth is inline or passthrough names none.
func TestSecretRefsOfAuth(t *testing.T) {
	policy := func(kind, name string, auth *v1alpha1.BackendAuth) *v1alpha1.AgentgatewayPolicy {
		return &v1alpha1.AgentgatewayPolicy{TypeMeta: metav1.TypeMeta{Kind: kind}, ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name},
			Spec: v1alpha1.AgentgatewayPolicySpec{Backend: &v1alpha1.BackendPolicy{Auth: auth}}}
	}
	key := "inline"
	res := &translator.Resources{
		Backends: []*v1alpha1.AgentgatewayBackend{{ObjectMeta: metav1.ObjectMeta{Namespace: "llm", Name: "openai"},
			Spec: v1alpha1.AgentgatewayBackendSpec{Policies: &v1alpha1.BackendPolicies{Auth: &v1alpha1.BackendAuth{SecretRef: &v1alpha1.LocalObjectReference{Name: "openai-key"}}}}}},
		Policies: []*v1alpha1.AgentgatewayPolicy{
			policy("", "by-secret", &v1alpha1.BackendAuth{SecretRef: &v1alpha1.LocalObjectReference{Name: "tools-token"}}),
			policy(translator.KindEnterpriseAgentgatewayPolicy, "enterprise", &v1alpha1.BackendAuth{SecretRef: &v1alpha1.LocalObjectReference{Name: "other-token"}}),
			policy("", "inline", &v1alpha1.BackendAuth{Key: &key}),
			policy("", "passthrough", &v1alpha1.BackendAuth{Passthrough: &v1alpha1.BackendAuthPassthrough{}}),
		},
	}
	var got []string
	for _, r := range secretRefs(res, translator.Options{}) {
		got = append(got, r.key.String()+" "+r.owner+" "+r.field)
	}
	want := []string{
		"llm/openai-key AgentgatewayBackend llm/openai spec.policies.auth.secretRef",
		"apps/tools-token AgentgatewayPolicy apps/by-secret spec.backend.auth.secretRef",
		"apps/other-token EnterpriseAgentgatewayPolicy apps/enterprise spec.backend.auth.secretRef",
	}
	if !slices.Equal(got, want) {
		t.Errorf("secret refs:\n%q\nwant\n%q", got, want)
	}
}

// TestConfigMapRefs: the ConfigMaps read for a served Gateway are those its client certificate
// validations (the default and each perPort entry) name as core ConfigMaps, in its own namespace
// or where a ReferenceGrant permits; other kinds, ungranted namespaces and the Gateways of a
// class not served name none.
func TestConfigMapRefs(t *testing.T) {
	ns := func(s string) *gwv1.Namespace { n := gwv1.Namespace(s); return &n }
	gateway := func(name, class string) *gwv1.Gateway {
		return &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name}, Spec: gwv1.GatewaySpec{
			GatewayClassName: gwv1.ObjectName(class),
			TLS: &gwv1.GatewayTLSConfig{Frontend: &gwv1.FrontendTLSConfig{
				Default: gwv1.TLSConfig{Validation: &gwv1.FrontendTLSValidation{CACertificateRefs: []gwv1.ObjectReference{
					{Kind: "ConfigMap", Name: "own"}, {Kind: "Secret", Name: "a-secret"}, {Group: "example.com", Kind: "ConfigMap", Name: "other-group"},
				}}},
				PerPort: []gwv1.TLSPortConfig{
					{Port: 8443, TLS: gwv1.TLSConfig{}},
					{Port: 9443, TLS: gwv1.TLSConfig{Validation: &gwv1.FrontendTLSValidation{CACertificateRefs: []gwv1.ObjectReference{
						{Kind: "ConfigMap", Name: "shared", Namespace: ns("pki")}, {Kind: "ConfigMap", Name: "other", Namespace: ns("elsewhere")},
					}}}},
				},
			}},
		}}
	}
	res := &translator.Resources{
		GatewayClasses: []*gwv1.GatewayClass{
			{ObjectMeta: metav1.ObjectMeta{Name: "ours"}, Spec: gwv1.GatewayClassSpec{ControllerName: translator.DefaultControllerName}},
			{ObjectMeta: metav1.ObjectMeta{Name: "theirs"}, Spec: gwv1.GatewayClassSpec{ControllerName: "example.com/other"}},
		},
		Gateways: []*gwv1.Gateway{gateway("served", "ours"), gateway("not-served", "theirs")},
		ReferenceGrants: []*gwv1.ReferenceGrant{{ObjectMeta: metav1.ObjectMeta{Namespace: "pki", Name: "gateways"}, Spec: gwv1.ReferenceGrantSpec{
			From: []gwv1.ReferenceGrantFrom{{Group: gwv1.GroupName, Kind: "Gateway", Namespace: "apps"}},
			To:   []gwv1.ReferenceGrantTo{{Group: "", Kind: "ConfigMap"}},
		}}},
	}
	var got []string
	for _, r := range configMapRefs(res, translator.Options{RequireGatewayClass: true}) {
		got = append(got, r.key.String()+" "+r.owner+" "+r.field)
	}
	want := []string{
		"apps/own Gateway apps/served spec.tls.frontend.default.validation.caCertificateRefs[0]",
		"pki/shared Gateway apps/served spec.tls.frontend.perPort[1].tls.validation.caCertificateRefs[0]",
	}
	if !slices.Equal(got, want) {
		t.Errorf("ConfigMap refs:\n%q\nwant\n%q", got, want)
	}
}
