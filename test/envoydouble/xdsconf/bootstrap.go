package xdsconf

import (
	"fmt"
	"os"
	"sort"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	downstreamconnsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	// Types that may appear in Any fields of a bootstrap or of xDS resources, registered for
	// protojson.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// Bootstrap is the compiled bootstrap: the node, the static resources, where ADS is and the admin
// address.
type Bootstrap struct {
	// Node is the bootstrap's node (an empty one when it has none); the command line's
	// --service-node and --service-cluster replace its id and cluster (double.Start).
	Node *corev3.Node
	// Clusters are static_resources.clusters by name (never EDS).
	Clusters map[string]*Cluster
	// Listeners are static_resources.listeners by name.
	Listeners map[string]*Listener
	// ADSCluster is the static cluster of dynamic_resources.ads_config (empty = no ADS).
	ADSCluster string
	// SotW is set by ads_config.api_type GRPC (State of the World); DELTA_GRPC leaves it false.
	SotW bool
	// LDS and CDS tell whether listeners and clusters come over ADS.
	LDS, CDS bool
	// InitialFetchTimeout is the initial_fetch_timeout of lds_config/cds_config (Envoy's default
	// 15 s): after it the server goes LIVE even without a first answer.
	InitialFetchTimeout time.Duration
	// AdminAddress is admin.address as "host:port" ("" = no admin listener).
	AdminAddress string
	// MaxDownstreamConnections is the overload manager's global downstream connection limit
	// (envoy.resource_monitors.global_downstream_max_connections); 0: none.
	MaxDownstreamConnections int64
}

// LoadBootstrap reads a bootstrap file (YAML or JSON) as Envoy's -c does.
func LoadBootstrap(file string) (*Bootstrap, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", file, err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", file, err)
	}
	out, err := CompileBootstrap(&b)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", file, err)
	}
	return out, nil
}

// CompileBootstrap checks and compiles a Bootstrap.
func CompileBootstrap(b *bootstrapv3.Bootstrap) (*Bootstrap, error) {
	if err := validate(b, "bootstrap"); err != nil {
		return nil, err
	}
	// Ignored on purpose: stats_config, stats_flush_interval, cluster_manager (stats and
	// protection limits). layered_runtime and overload_manager are checked: runtime keys and
	// overload actions change Envoy's behaviour.
	if err := checkFields(b, "", "node", "static_resources", "dynamic_resources", "admin", "layered_runtime",
		"stats_config", "stats_flush_interval", "overload_manager", "cluster_manager"); err != nil {
		return nil, err
	}
	if err := checkRuntime(b.GetLayeredRuntime()); err != nil {
		return nil, err
	}
	maxConns, err := compileOverloadManager(b.GetOverloadManager())
	if err != nil {
		return nil, err
	}
	out := &Bootstrap{Node: b.GetNode(), Clusters: map[string]*Cluster{}, Listeners: map[string]*Listener{}, InitialFetchTimeout: 15 * time.Second,
		MaxDownstreamConnections: maxConns}
	if out.Node == nil {
		out.Node = &corev3.Node{}
	}
	sr := b.GetStaticResources()
	if err := checkFields(sr, "static_resources", "listeners", "clusters"); err != nil {
		return nil, err
	}
	for _, c := range sr.GetClusters() {
		cc, err := CompileCluster(c)
		if err != nil {
			return nil, fmt.Errorf("static_resources: %w", err)
		}
		if cc.Type == EDS {
			return nil, fmt.Errorf("static_resources: cluster %q: EDS static clusters are not implemented by envoydouble", c.GetName())
		}
		if cc.ClientSecret != "" {
			// the ADS and ext_proc clusters' client certificates are files (the bootstrap's)
			return nil, fmt.Errorf("static_resources: cluster %q: client certificates over SDS in static clusters are not implemented by envoydouble", c.GetName())
		}
		out.Clusters[cc.Name] = cc
	}
	for _, l := range sr.GetListeners() {
		cl, err := CompileListener(l)
		if err != nil {
			return nil, fmt.Errorf("static_resources: %w", err)
		}
		out.Listeners[cl.Name] = cl
	}
	if dr := b.GetDynamicResources(); dr != nil {
		if err := checkFields(dr, "dynamic_resources", "ads_config", "lds_config", "cds_config"); err != nil {
			return nil, err
		}
		if ads := dr.GetAdsConfig(); ads != nil {
			p := "dynamic_resources.ads_config"
			if err := checkFields(ads, p, "api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only"); err != nil {
				return nil, err
			}
			switch ads.GetApiType() {
			case corev3.ApiConfigSource_DELTA_GRPC:
			case corev3.ApiConfigSource_GRPC:
				out.SotW = true
			default:
				return nil, fmt.Errorf("%s.api_type: %s not implemented by envoydouble (DELTA_GRPC, GRPC)", p, ads.GetApiType())
			}
			if len(ads.GetGrpcServices()) != 1 || ads.GetGrpcServices()[0].GetEnvoyGrpc() == nil {
				return nil, fmt.Errorf("%s.grpc_services: exactly one envoy_grpc service is required", p)
			}
			g, err := compileGrpcService(ads.GetGrpcServices()[0], p+".grpc_services[0]")
			if err != nil {
				return nil, err
			}
			if _, ok := out.Clusters[g.Cluster]; !ok {
				return nil, fmt.Errorf("%s.grpc_services[0].envoy_grpc.cluster_name: %q is not a static cluster", p, g.Cluster)
			}
			out.ADSCluster = g.Cluster
		}
		for name, cs := range map[string]*corev3.ConfigSource{"lds_config": dr.GetLdsConfig(), "cds_config": dr.GetCdsConfig()} {
			if cs == nil {
				continue
			}
			p := "dynamic_resources." + name
			if err := checkFields(cs, p, "ads", "resource_api_version", "initial_fetch_timeout"); err != nil {
				return nil, err
			}
			if cs.GetAds() == nil || out.ADSCluster == "" {
				return nil, fmt.Errorf("%s: only ads (with ads_config) is implemented by envoydouble", p)
			}
			if t := cs.GetInitialFetchTimeout(); t != nil {
				out.InitialFetchTimeout = t.AsDuration()
			}
		}
		out.LDS, out.CDS = dr.GetLdsConfig() != nil, dr.GetCdsConfig() != nil
	}
	if a := b.GetAdmin(); a != nil {
		if err := checkFields(a, "admin", "address", "access_log", "access_log_path", "profile_path"); err != nil {
			return nil, err
		}
		ep, err := compileAddress(a.GetAddress(), "admin.address")
		if err != nil {
			return nil, err
		}
		if ep.Network != "tcp" {
			return nil, fmt.Errorf("admin.address: only socket_address is implemented by envoydouble")
		}
		out.AdminAddress = ep.Addr()
	}
	return out, nil
}

// globalConnectionsMonitor is the resource monitor that bounds the downstream connections of
// all listeners together.
const globalConnectionsMonitor = "envoy.resource_monitors.global_downstream_max_connections"

// compileOverloadManager returns the global downstream connection limit (0: none). That monitor
// acts by itself: the listeners close each connection they accept past the limit. Other
// monitors only feed actions, which change answers (stop accepting requests, disable keep-alive,
// reset streams): actions, load shed points and other monitors are refused; refresh_interval
// (how often the others are read) is accepted.
func compileOverloadManager(om *overloadv3.OverloadManager) (int64, error) {
	const p = "overload_manager"
	if err := checkFields(om, p, "refresh_interval", "resource_monitors"); err != nil {
		return 0, err
	}
	var limit int64
	for i, m := range om.GetResourceMonitors() {
		mp := join(p, idx("resource_monitors", i))
		if err := checkFields(m, mp, "name", "typed_config"); err != nil {
			return 0, err
		}
		if m.GetName() != globalConnectionsMonitor || limit != 0 {
			return 0, fmt.Errorf("%s: %q not implemented by envoydouble (one %s)", mp, m.GetName(), globalConnectionsMonitor)
		}
		var cfg downstreamconnsv3.DownstreamConnectionsConfig
		if err := unpack(m.GetTypedConfig(), &cfg, mp+".typed_config"); err != nil {
			return 0, err
		}
		if err := validate(&cfg, mp+".typed_config"); err != nil { // the limit must be above 0
			return 0, err
		}
		limit = cfg.GetMaxActiveDownstreamConnections()
	}
	return limit, nil
}

// runtimeKeys are the runtime keys a bootstrap may set. re2.max_program_size.* bound the RE2
// program size of safe_regex matchers (Envoy's default error level 100 refuses large regexes);
// the double does not estimate RE2 program sizes, so it accepts the keys that raise the bound
// (mcpgate's bootstrap sets the error level to the maximum) and nothing else: every other key
// (feature flags such as envoy.reloadable_features.ext_proc_fail_close_spurious_resp) changes
// behaviour the double reproduces only at its default.
var runtimeKeys = map[string]bool{"re2.max_program_size.error_level": true, "re2.max_program_size.warn_level": true}

// checkRuntime refuses the runtime layers and keys the double does not reproduce: only static
// layers (and an admin layer, empty until the admin changes it) are implemented.
func checkRuntime(lr *bootstrapv3.LayeredRuntime) error {
	for i, l := range lr.GetLayers() {
		p := fmt.Sprintf("layered_runtime.layers[%d](%s)", i, l.GetName())
		switch {
		case l.GetAdminLayer() != nil:
		case l.GetStaticLayer() != nil:
			keys := make([]string, 0, len(l.GetStaticLayer().GetFields()))
			for k := range l.GetStaticLayer().GetFields() {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if !runtimeKeys[k] {
					return fmt.Errorf("%s.static_layer: runtime key %q not implemented by envoydouble", p, k)
				}
			}
		default:
			return fmt.Errorf("%s: only static_layer and admin_layer are implemented by envoydouble", p)
		}
	}
	return nil
}
