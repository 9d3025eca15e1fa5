package xdsconf_test

import (
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	downstreamconnsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	fixedheapv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// TestRuntimeKeysAreChecked: runtime keys change Envoy's behaviour, so a bootstrap may only set
// the ones the double reproduces (the RE2 program size bounds mcpgate raises).
func TestRuntimeKeysAreChecked(t *testing.T) {
	static := func(kv map[string]any) *bootstrapv3.RuntimeLayer {
		s, err := structpb.NewStruct(kv)
		if err != nil {
			t.Fatal(err)
		}
		return &bootstrapv3.RuntimeLayer{Name: "l", LayerSpecifier: &bootstrapv3.RuntimeLayer_StaticLayer{StaticLayer: s}}
	}
	for _, c := range []struct {
		layer *bootstrapv3.RuntimeLayer
		want  string // "" = accepted
	}{
		{static(map[string]any{"re2.max_program_size.error_level": 4294967295.0}), ""},
		{&bootstrapv3.RuntimeLayer{Name: "admin", LayerSpecifier: &bootstrapv3.RuntimeLayer_AdminLayer_{AdminLayer: &bootstrapv3.RuntimeLayer_AdminLayer{}}}, ""},
		{static(map[string]any{"envoy.reloadable_features.ext_proc_fail_close_spurious_resp": false}), "envoy.reloadable_features.ext_proc_fail_close_spurious_resp"},
		{&bootstrapv3.RuntimeLayer{Name: "disk", LayerSpecifier: &bootstrapv3.RuntimeLayer_DiskLayer_{DiskLayer: &bootstrapv3.RuntimeLayer_DiskLayer{SymlinkRoot: "/srv"}}}, "only static_layer"},
	} {
		_, err := xdsconf.CompileBootstrap(&bootstrapv3.Bootstrap{LayeredRuntime: &bootstrapv3.LayeredRuntime{Layers: []*bootstrapv3.RuntimeLayer{c.layer}}})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.layer, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), "layered_runtime.layers[0]") || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: got %v, want a refusal naming %q", c.layer, err, c.want)
		}
	}
}

// TestOverloadManager: the global downstream connection limit is read; what else the overload
// manager does (actions, other monitors) changes answers and is refused, as is a limit Envoy
// refuses.
func TestOverloadManager(t *testing.T) {
	monitor := func(name string, m proto.Message) *overloadv3.ResourceMonitor {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return &overloadv3.ResourceMonitor{Name: name, ConfigType: &overloadv3.ResourceMonitor_TypedConfig{TypedConfig: a}}
	}
	const global = "envoy.resource_monitors.global_downstream_max_connections"
	limit := func(n int64) *overloadv3.ResourceMonitor {
		return monitor(global, &downstreamconnsv3.DownstreamConnectionsConfig{MaxActiveDownstreamConnections: n})
	}
	for _, c := range []struct {
		name string
		om   *overloadv3.OverloadManager
		want int64
		err  string
	}{
		{"none", nil, 0, ""},
		{"the connection limit", &overloadv3.OverloadManager{ResourceMonitors: []*overloadv3.ResourceMonitor{limit(50000)}}, 50000, ""},
		{"a limit of 0", &overloadv3.OverloadManager{ResourceMonitors: []*overloadv3.ResourceMonitor{limit(0)}}, 0,
			"overload_manager.resource_monitors[0].typed_config: invalid"},
		{"another monitor", &overloadv3.OverloadManager{ResourceMonitors: []*overloadv3.ResourceMonitor{
			monitor("envoy.resource_monitors.fixed_heap", &fixedheapv3.FixedHeapConfig{MaxHeapSizeBytes: 1 << 30})}}, 0,
			`overload_manager.resource_monitors[0]: "envoy.resource_monitors.fixed_heap" not implemented`},
		{"an action", &overloadv3.OverloadManager{ResourceMonitors: []*overloadv3.ResourceMonitor{limit(10)},
			Actions: []*overloadv3.OverloadAction{{Name: "envoy.overload_actions.stop_accepting_requests", Triggers: []*overloadv3.Trigger{{
				Name: global, TriggerOneof: &overloadv3.Trigger_Threshold{Threshold: &overloadv3.ThresholdTrigger{Value: 0.9}}}}}}}, 0,
			"overload_manager.actions: not implemented"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := xdsconf.CompileBootstrap(&bootstrapv3.Bootstrap{OverloadManager: c.om})
			switch {
			case c.err != "":
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Errorf("error %v, want one containing %q", err, c.err)
				}
			case err != nil:
				t.Fatal(err)
			case b.MaxDownstreamConnections != c.want:
				t.Errorf("limit %d, want %d", b.MaxDownstreamConnections, c.want)
			}
		})
	}
}

// TestMuxUpstreamListener: mcpgate's bootstrap binds its mux upstream listener on a Unix socket
// (a pipe address) with RDS over ADS; the double reproduces a pipe listener on a path, and refuses
// what it does not (an abstract socket, a mode Envoy would chmod the socket with).
func TestMuxUpstreamListener(t *testing.T) {
	b, err := bootstrap.Build(bootstrap.Options{Gateway: "ns/gw", MuxUpstream: "unix:///tmp/x/up.sock"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := xdsconf.CompileBootstrap(b)
	if err != nil {
		t.Fatal(err)
	}
	l := got.Listeners[contract.MuxUpstreamListener]
	if l == nil || l.Address.Network != "unix" || l.Address.Path != "/tmp/x/up.sock" || l.HCM.RDSName != contract.MuxUpstreamRoutes ||
		len(l.HCM.ExtProcs) != 0 || l.HCM.StatefulSession == nil || len(l.HCM.AccessLogs) != 1 {
		t.Fatalf("listener %+v", l)
	}
	for _, c := range []struct {
		path string
		mode uint32
	}{{"@abstract", 0}, {"/tmp/x/up.sock", 0o600}} {
		bad := proto.Clone(b).(*bootstrapv3.Bootstrap)
		pipe := bad.GetStaticResources().GetListeners()[0].GetAddress().GetPipe()
		pipe.Path, pipe.Mode = c.path, c.mode
		if _, err := xdsconf.CompileBootstrap(bad); err == nil || !strings.Contains(err.Error(), "address.pipe") {
			t.Errorf("pipe %q mode %o: %v, want a refusal naming address.pipe", c.path, c.mode, err)
		}
	}
}
