package kubernetes_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"k8s.io/apimachinery/pkg/types"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
	"github.com/mcpgate/mcpgate/translator"
)

// The objects of TestMultiplexedSelectorTargets, in its namespace mux.
const (
	muxNS       = "mux"
	muxGateway  = muxNS + "/gw"
	muxListener = muxGateway + "/8080"
	muxBackend  = muxNS + "/muxed"
	// the targets' clusters: the selector's Service ports (EDS), the static host (STRICT_DNS)
	alphaCluster  = "agentgatewaybackend/mux/muxed/selected/mux/alpha/3001"
	betaCluster   = "agentgatewaybackend/mux/muxed/selected/mux/beta/3002"
	remoteCluster = "agentgatewaybackend/mux/muxed/remote"
)

// TestMultiplexedSelectorTargets: an AgentgatewayBackend whose selector target finds two Services
// with an MCP appProtocol, beside a static target, is multiplexed (docs/design.md
// "Multiplexing"): its route goes to the mux with the three targets in x-mcpgate-mux and
// x-mcpgate-targets, the Gateway's mux upstream routes reach each target's cluster, whose
// endpoints are the EndpointSlices' ready ones, and the backend's status lists the targets. The
// mux follows the Services as they go, down to one target, routed unmultiplexed; a target name
// the mux cannot split (an annotation with "_") routes the first target with a warning.
func TestMultiplexedSelectorTargets(t *testing.T) {
	const ctrlName = "test.mcpgate.dev/mux"
	classAndNamespace(t, muxNS, ctrlName)
	mustKubectl(t, append(httpGateway(muxNS, "gw", muxNS), []byte(`---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: muxed, namespace: mux}
spec:
  mcp:
    targets:
    - name: selected
      selector: {services: {matchLabels: {app: muxed}}}
    - name: remote
      static: {host: tools.example.com, port: 8080, path: /v1/mcp}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: muxed, namespace: mux}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /mcp}}]
    backendRefs: [{group: agentgateway.dev, kind: AgentgatewayBackend, name: muxed}]
---
`+muxService("alpha", "alpha-tools", 3001)+`---
apiVersion: v1
kind: Service
metadata:
  name: beta
  namespace: mux
  labels: {app: muxed}
spec:
  ports: [{name: mcp, port: 3002, appProtocol: agentgateway.dev/mcp}]
---
`+endpointSliceYAML(muxNS, "alpha", 9001, "- addresses: [10.4.0.1]\n- addresses: [10.4.0.2]\n  conditions: {ready: false}\n")+`---
`+endpointSliceYAML(muxNS, "beta", 9002, "- addresses: [10.4.0.3]\n"))...), "apply", "-f", "-")
	installDeploy(t, false)
	ctrl := startController(t, t, controllerConfig(), kubernetes.Options{ControllerName: ctrlName})
	ads := watchADS(t, ctrl, muxGateway)
	backend := types.NamespacedName{Namespace: muxNS, Name: "muxed"}
	const multiplexed = "MCP targets multiplexed by mcpgate's mux"

	alpha := contract.MuxTarget{Name: "alpha-tools", Cluster: alphaCluster, Path: "/alpha/mcp"} // the Service's annotations
	beta := contract.MuxTarget{Name: "beta-mcp", Cluster: betaCluster, Path: "/mcp"}            // SERVICE-PORT, the default path
	remote := contract.MuxTarget{Name: "remote", Cluster: remoteCluster, Path: "/v1/mcp"}

	t.Run("three targets multiplexed", func(t *testing.T) {
		eventually(t, "the mux's routes, clusters and endpoints", func() error {
			return checkMuxServed(ads, []contract.MuxTarget{alpha, beta, remote}, map[string][]string{
				alphaCluster: {"10.4.0.1"}, // 10.4.0.2 is not ready
				betaCluster:  {"10.4.0.3"},
			})
		})
		eventually(t, "the backend's status lists the targets", func() error {
			_, err := backendAccepted(t, backend, multiplexed,
				"alpha-tools: streamable-http at /alpha/mcp", "beta-mcp: streamable-http at /mcp", "remote: streamable-http at /v1/mcp")
			return err
		})
	})

	t.Run("a Service deleted leaves the mux", func(t *testing.T) {
		mustKubectl(t, nil, "-n", muxNS, "delete", "service", "beta")
		eventually(t, "the mux without beta-mcp", func() error {
			return checkMuxServed(ads, []contract.MuxTarget{alpha, remote}, map[string][]string{alphaCluster: {"10.4.0.1"}})
		})
		eventually(t, "the backend's status without beta-mcp", func() error {
			msg, err := backendAccepted(t, backend, multiplexed, "alpha-tools: streamable-http at /alpha/mcp", "remote: streamable-http at /v1/mcp")
			if err == nil && strings.Contains(msg, "beta") {
				return fmt.Errorf("Accepted message %q still names beta", msg)
			}
			return err
		})
	})

	t.Run("one target left is routed unmultiplexed", func(t *testing.T) {
		mustKubectl(t, nil, "-n", muxNS, "delete", "service", "alpha")
		eventually(t, "the route to the static target's cluster", func() error {
			return checkRoutedDirectly(ads, remoteCluster, "remote")
		})
		if err := ads.hasNames(resourcev3.EndpointType); err != nil {
			t.Error(err) // a STRICT_DNS cluster's endpoints are its own
		}
		eventually(t, "the backend's status: one target, the selector left out", func() error {
			msg, err := backendAccepted(t, backend, "MCP target remote: streamable-http at /v1/mcp",
				"spec.mcp.targets[0].selector: selects no Service port", "target selected is left out")
			if err == nil && strings.Contains(msg, multiplexed) {
				return fmt.Errorf("Accepted message %q says multiplexed", msg)
			}
			return err
		})
	})

	t.Run("a target name the mux cannot split", func(t *testing.T) {
		mustKubectl(t, []byte(muxService("alpha", "alpha_tools", 3001)), "apply", "-f", "-")
		eventually(t, "the route to the first target's cluster", func() error {
			if err := checkRoutedDirectly(ads, alphaCluster, "alpha_tools"); err != nil {
				return err
			}
			return ads.hasEndpoints(alphaCluster, "10.4.0.1")
		})
		eventually(t, "the backend's status warns, naming the field", func() error {
			msg, err := backendAccepted(t, backend, "MCP target alpha_tools: streamable-http at /alpha/mcp",
				`spec.mcp.targets[0].selector: not multiplexed: target alpha_tools (Service mux/alpha port 3001 of spec.mcp.targets[0].selector) does not fit the mux: name "alpha_tools"`,
				`its annotations agentgateway.dev/mcp-target-name and agentgateway.dev/mcp-path`,
				"only the first target, alpha_tools (Service mux/alpha port 3001 of spec.mcp.targets[0].selector), is routed; not routed: remote (spec.mcp.targets[1])")
			if err == nil && strings.Contains(msg, multiplexed) {
				return fmt.Errorf("Accepted message %q says multiplexed", msg)
			}
			return err
		})
	})
}

// muxService is the manifest of a Service name in mux that the backend's selector finds: one
// port with the MCP appProtocol, annotated with its target name and path /alpha/mcp.
func muxService(name, targetName string, port int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
  namespace: mux
  labels: {app: muxed}
  annotations: {agentgateway.dev/mcp-target-name: %q, agentgateway.dev/mcp-path: /alpha/mcp}
spec:
  ports: [{name: mcp, port: %d, appProtocol: agentgateway.dev/mcp}]
`, name, targetName, port)
}

// checkMuxServed returns an error unless the Gateway mux/gw serves the backend mux/muxed
// multiplexed with targets (in spec order): its route to the bootstrap's mux cluster with the
// targets in x-mcpgate-mux and in ext_proc's x-mcpgate-targets, one mux upstream route per target
// cluster matching x-mcpgate-cluster, the targets' clusters and no other, and endpoints, exactly,
// the ClusterLoadAssignments (cluster -> addresses).
func checkMuxServed(ads *adsWatch, targets []contract.MuxTarget, endpoints map[string][]string) error {
	r, err := muxRoute(ads)
	if err != nil {
		return err
	}
	if c := r.GetRoute().GetCluster(); c != contract.MuxCluster {
		return fmt.Errorf("route %s goes to cluster %q, want %s", r.GetName(), c, contract.MuxCluster)
	}
	var headers []*corev3.HeaderValueOption
	for _, h := range r.GetRequestHeadersToAdd() {
		if h.GetHeader().GetKey() == contract.HeaderMux {
			headers = append(headers, h)
		}
	}
	if len(headers) != 1 || headers[0].GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
		return fmt.Errorf("route %s adds %s %v, want it once, replacing a client's", r.GetName(), contract.HeaderMux, headers)
	}
	var got contract.Mux
	dec := json.NewDecoder(bytes.NewReader([]byte(headers[0].GetHeader().GetValue())))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		return fmt.Errorf("route %s: %s %q: %w", r.GetName(), contract.HeaderMux, headers[0].GetHeader().GetValue(), err)
	}
	want := contract.Mux{Gateway: muxGateway, Backend: muxBackend, PrefixMode: "Conditional", FailureMode: "FailClosed", Targets: targets}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("route %s: %s is %+v, want %+v", r.GetName(), contract.HeaderMux, got, want)
	}
	md, err := extProcMetadata(r)
	if err != nil {
		return err
	}
	names := make([]string, len(targets))
	for i, tg := range targets {
		names[i] = tg.Name
	}
	if md[contract.MetadataTargets] != strings.Join(names, ",") || md[contract.MetadataBackend] != muxBackend || md[contract.MetadataMCP] != contract.TransportStreamableHTTP {
		return fmt.Errorf("route %s: ext_proc metadata %v, want %s %s, %s %s, %s %s", r.GetName(), md,
			contract.MetadataTargets, strings.Join(names, ","), contract.MetadataBackend, muxBackend, contract.MetadataMCP, contract.TransportStreamableHTTP)
	}
	if t, ok := md[contract.MetadataTarget]; ok {
		return fmt.Errorf("route %s: ext_proc metadata has %s %q beside %s", r.GetName(), contract.MetadataTarget, t, contract.MetadataTargets)
	}

	up, err := muxUpstream(ads)
	if err != nil {
		return err
	}
	var clusters, routes []string
	for _, tg := range targets {
		clusters = append(clusters, tg.Cluster)
	}
	slices.Sort(clusters)
	for _, ur := range up {
		m := ur.GetMatch().GetHeaders()
		if len(m) != 1 || m[0].GetName() != contract.HeaderMuxCluster || m[0].GetStringMatch().GetExact() != ur.GetRoute().GetCluster() ||
			!slices.Equal(ur.GetRequestHeadersToRemove(), []string{contract.HeaderMuxCluster}) {
			return fmt.Errorf("%s route %s matches %v, removes %q, goes to %q: want %s exactly the cluster it goes to, removed",
				contract.MuxUpstreamRoutes, ur.GetName(), m, ur.GetRequestHeadersToRemove(), ur.GetRoute().GetCluster(), contract.HeaderMuxCluster)
		}
		if want := contract.MuxUpstreamRoutes + "/" + ur.GetRoute().GetCluster(); ur.GetName() != want {
			return fmt.Errorf("%s route %s, want it named %s", contract.MuxUpstreamRoutes, ur.GetName(), want)
		}
		routes = append(routes, ur.GetRoute().GetCluster())
	}
	if !slices.Equal(routes, clusters) {
		return fmt.Errorf("%s routes to %q, want one route per target cluster %q", contract.MuxUpstreamRoutes, routes, clusters)
	}
	// the targets' clusters only: mcpgate_mux is the bootstrap's
	if err := ads.hasNames(resourcev3.ClusterType, clusters...); err != nil {
		return err
	}
	var eds []string
	for c, addrs := range endpoints {
		eds = append(eds, c)
		if err := ads.hasEndpoints(c, addrs...); err != nil {
			return err
		}
	}
	return ads.hasNames(resourcev3.EndpointType, eds...)
}

// checkRoutedDirectly returns an error unless the Gateway mux/gw routes the backend mux/muxed to
// its one target's cluster, without the mux: no x-mcpgate-mux, ext_proc told the target's name
// (x-mcpgate-target, no x-mcpgate-targets), no mux upstream route, no other cluster.
func checkRoutedDirectly(ads *adsWatch, cluster, target string) error {
	r, err := muxRoute(ads)
	if err != nil {
		return err
	}
	if c := r.GetRoute().GetCluster(); c != cluster {
		return fmt.Errorf("route %s goes to cluster %q, want %s", r.GetName(), c, cluster)
	}
	for _, h := range r.GetRequestHeadersToAdd() {
		if h.GetHeader().GetKey() == contract.HeaderMux {
			return fmt.Errorf("route %s adds %s %q", r.GetName(), contract.HeaderMux, h.GetHeader().GetValue())
		}
	}
	md, err := extProcMetadata(r)
	if err != nil {
		return err
	}
	if targets, ok := md[contract.MetadataTargets]; ok || md[contract.MetadataTarget] != target {
		return fmt.Errorf("route %s: ext_proc metadata %v, want %s %s and no %s (%q)", r.GetName(), md, contract.MetadataTarget, target, contract.MetadataTargets, targets)
	}
	up, err := muxUpstream(ads)
	if err != nil {
		return err
	}
	if len(up) != 0 {
		return fmt.Errorf("%s has %d routes, the first %s, want none", contract.MuxUpstreamRoutes, len(up), up[0].GetName())
	}
	return ads.hasNames(resourcev3.ClusterType, cluster)
}

// muxRoute is the route of the HTTPRoute mux/muxed on the Gateway's listener.
func muxRoute(ads *adsWatch) (*routev3.Route, error) {
	m, ok := ads.get(resourcev3.RouteType, muxListener)
	if !ok {
		return nil, fmt.Errorf("no RouteConfiguration %s; served %q", muxListener, ads.names(resourcev3.RouteType))
	}
	r := firstRoute(m.(*routev3.RouteConfiguration))
	if r == nil || r.GetName() != "httproute/mux/muxed/rule/0/match/0" {
		return nil, fmt.Errorf("RouteConfiguration %s: routes %q, want httproute/mux/muxed/rule/0/match/0", muxListener, routeNames(m.(*routev3.RouteConfiguration)))
	}
	return r, nil
}

// muxUpstream returns the routes of the Gateway's mux upstream RouteConfiguration (always
// served), in one virtual host matching any authority.
func muxUpstream(ads *adsWatch) ([]*routev3.Route, error) {
	m, ok := ads.get(resourcev3.RouteType, contract.MuxUpstreamRoutes)
	if !ok {
		return nil, fmt.Errorf("no RouteConfiguration %s; served %q", contract.MuxUpstreamRoutes, ads.names(resourcev3.RouteType))
	}
	vhs := m.(*routev3.RouteConfiguration).GetVirtualHosts()
	if len(vhs) != 1 || !slices.Equal(vhs[0].GetDomains(), []string{"*"}) {
		return nil, fmt.Errorf("RouteConfiguration %s: virtual hosts %v, want one of domain *", contract.MuxUpstreamRoutes, vhs)
	}
	return vhs[0].GetRoutes(), nil
}

// extProcMetadata is the gRPC initial metadata a route's ext_proc per-route config sets on the
// ext_proc stream (overrides.grpc_initial_metadata).
func extProcMetadata(r *routev3.Route) (map[string]string, error) {
	a := r.GetTypedPerFilterConfig()[translator.ExtProcFilterName]
	if a == nil {
		return nil, fmt.Errorf("route %s has no %s config", r.GetName(), translator.ExtProcFilterName)
	}
	var pr extprocv3.ExtProcPerRoute
	if err := a.UnmarshalTo(&pr); err != nil {
		return nil, fmt.Errorf("route %s: %s: %w", r.GetName(), translator.ExtProcFilterName, err)
	}
	md := map[string]string{}
	for _, h := range pr.GetOverrides().GetGrpcInitialMetadata() {
		md[h.GetKey()] = h.GetValue()
	}
	return md, nil
}
