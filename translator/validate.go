package translator

import (
	"errors"
	"fmt"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	statefulv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/stateful_session/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/contract"
)

// validator is what protoc-gen-validate generates on every Envoy message.
type validator interface{ ValidateAll() error }

// Validate checks a gateway's resources as Envoy would on receipt: every message and every
// typed config inside it passes go-control-plane's ValidateAll(), and the checks Envoy's
// config.cc makes beyond the proto rules hold (ext_proc: exactly one of grpc_service and
// http_service, FULL_DUPLEX_STREAMED needs trailers SEND and fail-closed, http_service allows no
// body or trailer modes, not both disable_clear_route_cache and a route_cache_action; route
// configurations: unique virtual host names and domains, known clusters, header changes as
// Envoy's HeaderParser takes them; STATIC clusters: IP addresses; listeners: their
// RouteConfiguration exists; TLS listeners: distinct filter chain matches, the SDS Secrets
// their chains name exist; upstream TLS: one client certificate at most, its SDS Secret exists).
func (g *GatewayConfig) Validate() error {
	var errs []error
	check := func(what string, m proto.Message) {
		if v, ok := m.(validator); ok {
			if err := v.ValidateAll(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", what, err))
			}
		}
	}
	routes := map[string]bool{}
	for _, rc := range g.Routes {
		routes[rc.Name] = true
	}
	secrets := map[string]bool{}
	for _, sec := range g.Secrets {
		check("secret "+sec.Name, sec)
		secrets[sec.Name] = true
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range g.Clusters {
		check("cluster "+c.Name, c)
		clusters[c.Name] = c
		errs = append(errs, checkCluster(c)...)
		if ts := c.GetTransportSocket(); ts != nil {
			errs = append(errs, checkAny("cluster "+c.Name+" transport socket", ts.GetTypedConfig(), check)...)
			errs = append(errs, checkClusterSecrets(c, secrets)...)
		}
	}
	for _, l := range g.Listeners {
		check("listener "+l.Name, l)
		errs = append(errs, checkTLSListener(l, secrets, check)...)
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				hcm := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					errs = append(errs, fmt.Errorf("listener %s: filter %s: %w", l.Name, f.Name, err))
					continue
				}
				check("listener "+l.Name+" HCM", hcm)
				if n := hcm.GetRds().GetRouteConfigName(); !routes[n] {
					errs = append(errs, fmt.Errorf("listener %s: RouteConfiguration %q is missing", l.Name, n))
				}
				for _, hf := range hcm.HttpFilters {
					errs = append(errs, checkAny("listener "+l.Name+" filter "+hf.Name, hf.GetTypedConfig(), check)...)
				}
				for _, al := range hcm.AccessLog {
					errs = append(errs, checkAny("listener "+l.Name+" access log", al.GetTypedConfig(), check)...)
				}
			}
		}
	}
	for _, rc := range g.Routes {
		check("route configuration "+rc.Name, rc)
		errs = append(errs, checkRouteConfig(rc, clusters, check)...)
	}
	assigned := make(map[string]bool, len(g.Endpoints))
	for _, e := range g.Endpoints {
		assigned[e.ClusterName] = true
		check("endpoints "+e.ClusterName, e)
		if c := clusters[e.ClusterName]; c == nil || c.GetType() != clusterv3.Cluster_EDS {
			errs = append(errs, fmt.Errorf("endpoints %s: no EDS cluster of that name", e.ClusterName))
		}
	}
	for _, c := range g.Clusters {
		if c.GetType() == clusterv3.Cluster_EDS && !assigned[c.Name] {
			errs = append(errs, fmt.Errorf("cluster %s: EDS cluster without a ClusterLoadAssignment", c.Name))
		}
	}
	return errors.Join(errs...)
}

func checkAny(what string, a *anypb.Any, check func(string, proto.Message)) []error {
	m, err := a.UnmarshalNew()
	if err != nil {
		return []error{fmt.Errorf("%s: %w", what, err)}
	}
	check(what, m)
	switch c := m.(type) {
	case *extprocv3.ExternalProcessor:
		if err := checkExtProc(c); err != nil {
			return []error{fmt.Errorf("%s: %w", what, err)}
		}
	case *extprocv3.ExtProcPerRoute:
		if err := checkProcessingMode(c.GetOverrides().GetProcessingMode(), false, c.GetOverrides().GetFailureModeAllow().GetValue()); err != nil {
			return []error{fmt.Errorf("%s: %w", what, err)}
		}
	case *statefulv3.StatefulSession:
		return checkSessionState(what, c.GetSessionState(), check)
	case *statefulv3.StatefulSessionPerRoute:
		return checkSessionState(what, c.GetStatefulSession().GetSessionState(), check)
	}
	return nil
}

// envelopeSessionStateURL is the config type of the envelope session state.
const envelopeSessionStateURL = "type.googleapis.com/envoy.extensions.http.stateful_session.envelope.v3.EnvelopeSessionState"

// checkSessionState makes the stateful session filter's check: Envoy looks the session state up
// by its name (getAndCheckFactoryByName) and reads the typed config as that extension's; the
// envelope is the one mcpgate emits.
func checkSessionState(what string, ss *corev3.TypedExtensionConfig, check func(string, proto.Message)) []error {
	if ss == nil {
		return nil
	}
	if ss.GetName() != envelopeSessionStateName || ss.GetTypedConfig().GetTypeUrl() != envelopeSessionStateURL {
		return []error{fmt.Errorf("%s: session state %q with a %s config, want %s with an EnvelopeSessionState",
			what, ss.GetName(), ss.GetTypedConfig().GetTypeUrl(), envelopeSessionStateName)}
	}
	return checkAny(what+" session state", ss.GetTypedConfig(), check)
}

// checkExtProc makes the checks of Envoy's ext_proc config.cc.
func checkExtProc(c *extprocv3.ExternalProcessor) error {
	if (c.GrpcService == nil) == (c.HttpService == nil) {
		return errors.New("exactly one of grpc_service and http_service must be set")
	}
	if c.DisableClearRouteCache && c.RouteCacheAction != extprocv3.ExternalProcessor_DEFAULT {
		return errors.New("disable_clear_route_cache and a non-default route_cache_action cannot both be set")
	}
	if err := checkProcessingMode(c.ProcessingMode, c.HttpService != nil, c.FailureModeAllow); err != nil {
		return err
	}
	for _, m := range c.AllowedOverrideModes {
		if err := checkProcessingMode(m, c.HttpService != nil, c.FailureModeAllow); err != nil {
			return fmt.Errorf("allowed_override_modes: %w", err)
		}
	}
	return nil
}

func checkProcessingMode(m *extprocv3.ProcessingMode, http, failOpen bool) error {
	if m == nil {
		return nil
	}
	if m.RequestBodyMode == extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED &&
		(m.RequestTrailerMode != extprocv3.ProcessingMode_SEND || failOpen) {
		return errors.New("FULL_DUPLEX_STREAMED request body needs request_trailer_mode SEND and failure_mode_allow false")
	}
	if m.ResponseBodyMode == extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED &&
		(m.ResponseTrailerMode != extprocv3.ProcessingMode_SEND || failOpen) {
		return errors.New("FULL_DUPLEX_STREAMED response body needs response_trailer_mode SEND and failure_mode_allow false")
	}
	if http && (m.RequestBodyMode != extprocv3.ProcessingMode_NONE || m.ResponseBodyMode != extprocv3.ProcessingMode_NONE ||
		m.RequestTrailerMode == extprocv3.ProcessingMode_SEND || m.ResponseTrailerMode == extprocv3.ProcessingMode_SEND) {
		return errors.New("http_service allows no body or trailer modes")
	}
	return nil
}

func checkCluster(c *clusterv3.Cluster) []error {
	if c.GetType() != clusterv3.Cluster_STATIC {
		return nil
	}
	var errs []error
	for _, le := range c.GetLoadAssignment().GetEndpoints() {
		for _, ep := range le.LbEndpoints {
			if a := ep.GetEndpoint().GetAddress().GetSocketAddress().GetAddress(); !isIP(a) {
				errs = append(errs, fmt.Errorf("cluster %s: STATIC cluster endpoint %q is not an IP address", c.Name, a))
			}
		}
	}
	return errs
}

func checkRouteConfig(rc *routev3.RouteConfiguration, clusters map[string]*clusterv3.Cluster, check func(string, proto.Message)) []error {
	errs := checkHeaders("route configuration "+rc.Name, rc.RequestHeadersToAdd, rc.ResponseHeadersToAdd,
		rc.RequestHeadersToRemove, rc.ResponseHeadersToRemove)
	names, domains := map[string]bool{}, map[string]bool{}
	for _, vh := range rc.VirtualHosts {
		if names[vh.Name] {
			errs = append(errs, fmt.Errorf("route configuration %s: virtual host %s is defined twice", rc.Name, vh.Name))
		}
		names[vh.Name] = true
		for _, d := range vh.Domains {
			if domains[d] {
				errs = append(errs, fmt.Errorf("route configuration %s: domain %q is in two virtual hosts", rc.Name, d))
			}
			domains[d] = true
		}
		errs = append(errs, checkHeaders("virtual host "+vh.Name, vh.RequestHeadersToAdd, vh.ResponseHeadersToAdd,
			vh.RequestHeadersToRemove, vh.ResponseHeadersToRemove)...)
		for _, r := range vh.Routes {
			what := "route " + r.Name + " in " + vh.Name
			errs = append(errs, checkHeaders(what, r.RequestHeadersToAdd, r.ResponseHeadersToAdd, r.RequestHeadersToRemove, r.ResponseHeadersToRemove)...)
			for name, a := range r.TypedPerFilterConfig {
				errs = append(errs, checkAny(what+" per-filter config "+name, a, check)...)
			}
			ra := r.GetRoute()
			if ra == nil {
				continue
			}
			known := func(c string) {
				// the mux's cluster is the bootstrap's, like ext_proc's
				if clusters[c] == nil && c != invalidBackendCluster && c != contract.MuxCluster {
					errs = append(errs, fmt.Errorf("%s: cluster %q does not exist", what, c))
				}
			}
			if c := ra.GetCluster(); c != "" {
				known(c)
			}
			for _, cw := range ra.GetWeightedClusters().GetClusters() {
				known(cw.Name)
				errs = append(errs, checkHeaders(what+" weighted cluster "+cw.Name, cw.RequestHeadersToAdd, cw.ResponseHeadersToAdd,
					cw.RequestHeadersToRemove, cw.ResponseHeadersToRemove)...)
				for name, a := range cw.TypedPerFilterConfig {
					errs = append(errs, checkAny(what+" weighted cluster "+cw.Name+" per-filter config "+name, a, check)...)
				}
			}
		}
	}
	return errs
}

// checkHeaders makes the checks of Envoy's HeaderParser: no ":"-prefixed or host header is added
// or removed, and every value parses as a format string. mcpgate writes literal values only, so
// a "%" must come as "%%" (a lone one is a command operator, or a parse error that makes Envoy
// refuse the whole RouteConfiguration).
func checkHeaders(what string, reqAdd, respAdd []*corev3.HeaderValueOption, reqRemove, respRemove []string) []error {
	var errs []error
	for _, opts := range [][]*corev3.HeaderValueOption{reqAdd, respAdd} {
		for _, o := range opts {
			k, v := o.GetHeader().GetKey(), o.GetHeader().GetValue()
			if !modifiableHeader(k) {
				errs = append(errs, fmt.Errorf("%s: header %q cannot be added", what, k))
			}
			if strings.Contains(strings.ReplaceAll(v, "%%", ""), "%") {
				errs = append(errs, fmt.Errorf("%s: header %s: value has a %% that is not written %%%%", what, k))
			}
		}
	}
	for _, names := range [][]string{reqRemove, respRemove} {
		for _, n := range names {
			if !modifiableHeader(n) {
				errs = append(errs, fmt.Errorf("%s: header %q cannot be removed", what, n))
			}
		}
	}
	return errs
}
