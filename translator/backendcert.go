// Backend client certificates: a Gateway's spec.tls.backend.clientCertificateRef (Gateway API
// v1.6, GatewayBackendTLS) names a kubernetes.io/tls Secret whose certificate the Gateway's Envoy
// presents on every TLS connection it opens to a backend, sent over SDS like an HTTPS
// listener's certificates (listenertls.go; docs/design.md, Backend client certificate).

package translator

import (
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// backendCertField is the field of a Gateway's backend client certificate.
const backendCertField = "spec.tls.backend.clientCertificateRef"

// backendCert is a Gateway's spec.tls.backend.clientCertificateRef as resolved: its Secret, or
// the ResolvedRefs reason and message that say why it does not resolve.
type backendCert struct {
	secret      *tlsv3.Secret // nil when the ref is invalid
	reason, msg string
}

// resolveBackendCert resolves a Gateway's spec.tls.backend.clientCertificateRef, when it has one,
// as a listener's certificateRefs entry (certificateRef: same grant, kind and Secret checks). An
// invalid ref is refused (Problems, the Gateway's ResolvedRefs False InvalidClientCertificateRef
// or RefNotPermitted); the Gateway is served, but not its TLS backends (withBackendCert).
func (t *translation) resolveBackendCert(gi *gatewayInfo) {
	g := gi.gw
	if g.Spec.TLS == nil || g.Spec.TLS.Backend == nil || g.Spec.TLS.Backend.ClientCertificateRef == nil {
		return
	}
	sec, denied, msg := t.certificateRef(g, backendCertField, *g.Spec.TLS.Backend.ClientCertificateRef)
	bc := &backendCert{secret: sec}
	if msg != "" {
		bc.reason = string(gwv1.GatewayReasonInvalidClientCertificateRef)
		if denied {
			bc.reason = string(gwv1.GatewayReasonRefNotPermitted)
		}
		msg += "; the Gateway's TLS backends answer 503 until it resolves (its plaintext backends are served)"
		bc.msg = backendCertField + ": " + msg
		t.st.refuse(KindGateway, g.Namespace, g.Name, backendCertField, msg)
	}
	gi.backendCert = bc
}

// backendRefsCondition is a Gateway's ResolvedRefs condition, written when it sets
// spec.tls.backend.clientCertificateRef (ok false otherwise: its listeners' ResolvedRefs say the
// rest). Gateway API: the references "not part of a specific Listener configuration" and "a
// positive-polarity summary of Listener's ResolvedRefs": False with the client certificate's
// reason when it does not resolve, else False ListenersNotResolved when a listener's refs do not,
// else True. It does not change Accepted or Programmed.
func backendRefsCondition(gi *gatewayInfo) (c metav1.Condition, ok bool) {
	bc, gen := gi.backendCert, gi.gw.Generation
	if bc == nil {
		return c, false
	}
	if bc.reason != "" {
		return condition(string(gwv1.GatewayConditionResolvedRefs), false, bc.reason, bc.msg, gen), true
	}
	var unresolved []string
	for _, li := range gi.listeners {
		if li.refsReason != "" || li.badKinds != "" {
			unresolved = append(unresolved, string(li.l.Name))
		}
	}
	if len(unresolved) > 0 {
		return condition(string(gwv1.GatewayConditionResolvedRefs), false, string(gwv1.GatewayReasonListenersNotResolved),
			plural(unresolved, "listener %s has", "listeners %s have")+" unresolved references (see the listener conditions)", gen), true
	}
	return condition(string(gwv1.GatewayConditionResolvedRefs), true, string(gwv1.GatewayReasonResolvedRefs), "", gen), true
}

// certClusterKey identifies a certCluster: the cluster as the backends built it and the Secret
// ("" for the refusal of an invalid ref).
type certClusterKey struct {
	c      *clusterv3.Cluster
	secret string
}

// withBackendCert applies a Gateway's backend client certificate (nil: none) to its clusters, its
// endpoints and its Secrets. Every cluster whose transport socket is upstream TLS (tlsSocket: a
// static MCP target, a static backend, an AI provider, a Service target reached over TLS) presents
// the certificate: its UpstreamTlsContext names the Secret over SDS, which joins the Gateway's
// Secrets. When the ref does not resolve, those clusters fail closed: each is replaced by a
// STATIC cluster of the same name (metadata and load balancer) without endpoints, which Envoy answers with 503
// (no healthy upstream, flag UH) without connecting, and an EDS one's endpoints are left out.
// Plaintext clusters are unchanged either way. The clusters of other Gateways are theirs: each
// Gateway's resources are served to its own node group.
func (x *xdsCommon) withBackendCert(bc *backendCert, cfg *GatewayConfig) {
	if bc == nil {
		return
	}
	secret := ""
	if bc.secret != nil {
		secret = bc.secret.Name
	}
	var replaced map[string]bool // EDS clusters replaced by the refusal
	used := false
	for i, c := range cfg.Clusters {
		if c.GetTransportSocket().GetName() != tlsSocketName {
			continue
		}
		if secret == "" && c.GetType() == clusterv3.Cluster_EDS {
			if replaced == nil {
				replaced = map[string]bool{}
			}
			replaced[c.Name] = true
		}
		cfg.Clusters[i] = x.certCluster(c, secret)
		used = true
	}
	if replaced != nil {
		cfg.Endpoints = slices.DeleteFunc(cfg.Endpoints, func(e *endpointv3.ClusterLoadAssignment) bool { return replaced[e.ClusterName] })
	}
	if !used || secret == "" {
		return
	}
	i, found := slices.BinarySearchFunc(cfg.Secrets, secret, func(s *tlsv3.Secret, name string) int { return strings.Compare(s.Name, name) })
	if !found { // an HTTPS listener of the Gateway may serve the same Secret
		cfg.Secrets = slices.Insert(cfg.Secrets, i, bc.secret)
	}
}

// certCluster returns c as it presents the client certificate of the SDS Secret secret, or as
// refused ("" secret): built once per cluster and Secret in a translation, as the clusters are
// shared by the Gateways whose routes use them.
func (x *xdsCommon) certCluster(c *clusterv3.Cluster, secret string) *clusterv3.Cluster {
	k := certClusterKey{c, secret}
	x.tlsMu.Lock()
	defer x.tlsMu.Unlock()
	if out, ok := x.certClusters[k]; ok {
		return out
	}
	var out *clusterv3.Cluster
	if secret == "" {
		// the load balancer as it was: the routes' hash policy goes with a ring hash
		out = &clusterv3.Cluster{Name: c.Name, ClusterDiscoveryType: x.staticType, ConnectTimeout: c.ConnectTimeout,
			LbPolicy: c.LbPolicy, LbConfig: c.LbConfig,
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: c.Name}, Metadata: c.Metadata}
	} else {
		out = proto.Clone(c).(*clusterv3.Cluster)
		out.TransportSocket = x.certSocket(c.TransportSocket, secret)
	}
	x.certClusters[k] = out
	return out
}

// certSocket returns the upstream TLS transport socket ts (tlsSocket's) with the client
// certificate of the SDS Secret secret, once per socket and Secret (tlsMu held). Envoy's
// UpstreamTlsContext takes one certificate ("Multiple TLS certificates are not supported for
// client contexts"), here tls_certificate_sds_secret_configs over ADS; it presents it when the
// server asks for one (CertificateRequest), whatever CAs the request names.
func (x *xdsCommon) certSocket(ts *corev3.TransportSocket, secret string) *corev3.TransportSocket {
	k := certSocketKey{ts, secret}
	if s, ok := x.certSockets[k]; ok {
		return s
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		panic(fmt.Sprintf("translator: the upstream TLS context built here does not unmarshal: %v", err))
	}
	ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: secret, SdsConfig: adsSource()}}
	s := &corev3.TransportSocket{Name: tlsSocketName, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
	x.certSockets[k] = s
	return s
}

// certSocketKey identifies a certSocket: the socket without the certificate and the Secret.
type certSocketKey struct {
	ts     *corev3.TransportSocket
	secret string
}

// checkClusterSecrets makes Envoy's check of a cluster's upstream TLS context beyond the proto
// rules: one certificate at most, and the SDS Secret it names among secrets (else the cluster
// never warms: Envoy waits for the Secret, then fails its connections).
func checkClusterSecrets(c *clusterv3.Cluster, secrets map[string]bool) []error {
	ts := c.GetTransportSocket()
	if ts.GetName() != tlsSocketName {
		return nil
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		return []error{fmt.Errorf("cluster %s transport socket: %w", c.Name, err)}
	}
	common := ctx.GetCommonTlsContext()
	sds := common.GetTlsCertificateSdsSecretConfigs()
	if n := len(sds) + len(common.GetTlsCertificates()); n > 1 {
		return []error{fmt.Errorf("cluster %s transport socket: %d client certificates; Envoy takes one", c.Name, n)}
	}
	var errs []error
	for _, s := range sds {
		if !secrets[s.Name] {
			errs = append(errs, fmt.Errorf("cluster %s transport socket: Secret %q is missing", c.Name, s.Name))
		}
	}
	return errs
}
