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
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
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
	case "secrets":
		m = &tlsv3.Secret{}
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
	case *tlsv3.Secret:
		if r.GetTlsCertificate() == nil { // the goldens print certificates' keys redacted
			_, err = xdsconf.CompileSecret(r)
		}
	}
	return err
}

// TestClientCAWarms: a listener of the translator's https-client-cert golden names its port's
// client CA Secret beside its certificate; without it the listener stays warming, as Envoy's
// waits for every SDS Secret of its chains.
func TestClientCAWarms(t *testing.T) {
	var out struct {
		Gateways map[string]struct {
			Listeners []json.RawMessage `json:"listeners"`
		} `json:"gateways"`
	}
	if err := json.Unmarshal(goldenJSON(t, "../../../translator/testdata/https-client-cert.out.yaml"), &out); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, raw := range out.Gateways["default/gw"].Listeners {
		var l listenerv3.Listener
		if err := protojson.Unmarshal(raw, &l); err != nil {
			t.Fatal(err)
		}
		if l.GetName() != "default/gw/8443" {
			continue
		}
		found = true
		c, err := xdsconf.CompileListener(&l)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range c.TLS.Chains {
			if ch.ClientCA != "client-ca/default/gw/8443" || !ch.RequireClientCert {
				t.Errorf("chain %s: client CA %q, require %v; want client-ca/default/gw/8443, required", ch.Name, ch.ClientCA, ch.RequireClientCert)
			}
		}
		missing := c.TLS.MissingSecrets(map[string]*xdsconf.Secret{"secret/default/mcp-cert": {}})
		if len(missing) != 1 || missing[0] != "client-ca/default/gw/8443" {
			t.Errorf("missing Secrets %q, want the client CA", missing)
		}
	}
	if !found {
		t.Fatal("no listener default/gw/8443 in the golden")
	}
}

// TestBridgedRuleRoutes serves the route configuration of the translator's mcp-sse-bridge golden
// (the lab's SSE target bridged) and checks which route each request takes, as Envoy matches
// them in order: a GET without Mcp-Session-Id is the target's legacy stream, a request with a
// legacy session query parameter (each spelling, as sent) its messages, anything else the mux's
// bridge; a newer HTTPRoute more specific by a header or a query parameter keeps its requests,
// though the legacy routes add a header or query match of their own.
func TestBridgedRuleRoutes(t *testing.T) {
	var out struct {
		Gateways map[string]struct {
			Routes []json.RawMessage `json:"routes"`
		} `json:"gateways"`
	}
	if err := json.Unmarshal(goldenJSON(t, "../../../translator/testdata/mcp-sse-bridge.out.yaml"), &out); err != nil {
		t.Fatal(err)
	}
	var vh *xdsconf.VirtualHost
	for _, raw := range out.Gateways["agentgateway-system/agentgateway"].Routes {
		var rc routev3.RouteConfiguration
		if err := protojson.Unmarshal(raw, &rc); err != nil {
			t.Fatal(err)
		}
		if rc.GetName() == "agentgateway-system/agentgateway/8080" {
			vh = compileRC(t, &rc).FindVirtualHost("127.0.0.1:8080")
		}
	}
	if vh == nil {
		t.Fatal("no virtual host for the listener on 8080 in the golden")
	}
	const lab, team = "httproute/agentgateway-system/mcp/rule/0/match/0", "httproute/agentgateway-system/mcp/rule/1/match/0"
	for _, c := range []struct {
		h    *headers.Map
		want string
	}{
		{hdrs(":method", "GET", ":path", "/sse"), lab + "/sse-stream"},
		{hdrs(":method", "GET", ":path", "/mcp", "mcp-session-id", "s1"), lab + "/bridge"},
		{hdrs(":method", "POST", ":path", "/sse"), lab + "/bridge"},
		{hdrs(":method", "POST", ":path", "/mcp", "mcp-session-id", "s1"), lab + "/bridge"},
		{hdrs(":method", "DELETE", ":path", "/mcp", "mcp-session-id", "s1"), lab + "/bridge"},
		{hdrs(":method", "POST", ":path", "/message?sessionId=s1"), lab + "/sse-messages-sessionId"},
		{hdrs(":method", "POST", ":path", "/message?sessionid=s1"), lab + "/sse-messages-sessionid"},
		{hdrs(":method", "POST", ":path", "/messages/?x=1&session_id=s1"), lab + "/sse-messages-session_id"},
		// a name Envoy does not decode is not a legacy session parameter to the routes
		{hdrs(":method", "POST", ":path", "/message?session%5Fid=s1"), lab + "/bridge"},
		// the rule's own match is kept on each of its routes
		{hdrs(":method", "GET", ":path", "/team/sse", "x-team", "tools"), team + "/sse-stream"},
		{hdrs(":method", "POST", ":path", "/team/m?sessionId=s1", "x-team", "tools"), team + "/sse-messages-sessionId"},
		{hdrs(":method", "POST", ":path", "/team/mcp", "x-team", "tools"), team + "/bridge"},
		{hdrs(":method", "GET", ":path", "/team/sse"), lab + "/sse-stream"},
		// newer, more specific routes keep theirs
		{hdrs(":method", "GET", ":path", "/sse", "x-tenant", "beta"), "httproute/agentgateway-system/tenant/rule/0/match/0"},
		{hdrs(":method", "POST", ":path", "/message?debug=1&sessionId=s1"), "httproute/agentgateway-system/debug/rule/0/match/0"},
		// a rule weighing the backend with a Service is not split
		{hdrs(":method", "POST", ":path", "/weighted/mcp"), "httproute/agentgateway-system/weighted/rule/0/match/0"},
	} {
		r := vh.FindRoute(c.h)
		if r == nil || r.Name != c.want {
			t.Errorf("%v: got %v, want %s", c.h.All(), r, c.want)
		}
	}
}
