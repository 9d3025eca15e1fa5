package kubernetes_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestSecretReadByName: an LLM backend's API key comes from the Secret it names, read by name
// with deploy/'s RBAC (get, no list or watch), and a rotated key is served after the next full
// pass.
func TestSecretReadByName(t *testing.T) {
	const ctrlName = "test.mcpgate.dev/secrets"
	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: llm}
spec: {controllerName: `+ctrlName+`}
---
apiVersion: v1
kind: Namespace
metadata: {name: llm}
`), "apply", "-f", "-")
	applyFile(t, filepath.Join("testdata", "llm-backend.yaml"))
	installDeploy(t, false)
	ctrl := startController(t, t, controllerConfig(), kubernetes.Options{ControllerName: ctrlName, ResyncPeriod: 200 * time.Millisecond})
	ads := watchADS(t, ctrl, "llm/gw")
	header := func(want string) func() error { return routeHeaders(ads, "llm/gw/8080", "authorization: "+want) }
	eventually(t, "the API key in the route", header("Bearer sk-test-secret-value"))
	rotated := mustKubectl(t, nil, "-n", "llm", "create", "secret", "generic", "openai-secret", "--from-literal=Authorization=sk-rotated", "--dry-run=client", "-o", "yaml")
	mustKubectl(t, []byte(rotated), "apply", "-f", "-")
	eventually(t, "the rotated API key in the route", header("Bearer sk-rotated"))
}

// routeHeaders returns a check that the routes of RouteConfiguration name, as w has it, add
// exactly the headers want ("KEY: VALUE").
func routeHeaders(w *adsWatch, name string, want ...string) func() error {
	return func() error {
		m, ok := w.get(resourcev3.RouteType, name)
		if !ok {
			return fmt.Errorf("no route configuration %s", name)
		}
		var values []string
		for _, vh := range m.(*routev3.RouteConfiguration).GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				for _, h := range r.GetRequestHeadersToAdd() {
					values = append(values, h.GetHeader().GetKey()+": "+h.GetHeader().GetValue())
				}
			}
		}
		if !slices.Equal(values, want) {
			return fmt.Errorf("route configuration %s: headers %q, want %q", name, values, want)
		}
		return nil
	}
}
