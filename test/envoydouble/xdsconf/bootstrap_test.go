package xdsconf_test

import (
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
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
