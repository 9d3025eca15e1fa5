package xdsconf_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// TestAcceptsWhatTheTranslatorEmits compiles every resource of the translator's golden files:
// what mcpgate emits, the double must serve (or this test names the resource and field it
// refuses, so the gap is closed in the double or in the translator).
func TestAcceptsWhatTheTranslatorEmits(t *testing.T) {
	files, _ := filepath.Glob("../../../translator/testdata/*.out.yaml")
	if len(files) == 0 {
		t.Fatal("no translator golden files found")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			js := goldenJSON(t, f)
			var out struct {
				Gateways map[string]map[string][]json.RawMessage `json:"gateways"`
			}
			if err := json.Unmarshal(js, &out); err != nil {
				t.Fatal(err)
			}
			for gw, kinds := range out.Gateways {
				for kind, items := range kinds {
					for _, item := range items {
						if err := compile(kind, item); err != nil {
							t.Errorf("gateway %s: %s: %v", gw, kind, err)
						}
					}
				}
			}
		})
	}
}

// goldenJSON reads a translator golden file as JSON.
func goldenJSON(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func compile(kind string, item json.RawMessage) error {
	var m proto.Message
	switch kind {
	case "listeners":
		m = &listenerv3.Listener{}
	case "routes":
		m = &routev3.RouteConfiguration{}
	case "clusters":
		m = &clusterv3.Cluster{}
	case "endpoints":
		m = &endpointv3.ClusterLoadAssignment{}
	default:
		return nil // policies are for ext_proc
	}
	if err := protojson.Unmarshal(item, m); err != nil {
		return err
	}
	var err error
	switch r := m.(type) {
	case *listenerv3.Listener:
		_, err = xdsconf.CompileListener(r)
	case *routev3.RouteConfiguration:
		_, err = xdsconf.CompileRouteConfig(r)
	case *clusterv3.Cluster:
		_, err = xdsconf.CompileCluster(r)
	case *endpointv3.ClusterLoadAssignment:
		_, err = xdsconf.CompileLoadAssignment(r)
	}
	return err
}
