package kubernetes_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestOptionalKindsMissing: on an API server without the ReferenceGrant CRD (Gateway API before
// v1.5 served it as v1beta1 only), without the BackendTLSPolicy CRD (v1 from Gateway API v1.4)
// and without Solo.io's EnterpriseAgentgatewayPolicy, the
// controller serves what there is (those kinds count as empty) rather than failing to start; a
// Gateway is accepted. It runs an API server of its own, with the other CRDs only.
func TestOptionalKindsMissing(t *testing.T) {
	gatewayAPI, err := gatewayAPIDir(testCluster.repo)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, dir := range []string{filepath.Join(gatewayAPI, "config", "crd", "standard"), filepath.Join(testCluster.repo, "deploy", "crds")} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if n := e.Name(); strings.HasSuffix(n, ".yaml") && !strings.Contains(n, "referencegrants") && !strings.Contains(n, "backendtlspolicies") && !strings.Contains(n, "enterpriseagentgateway") {
				paths = append(paths, filepath.Join(dir, n))
			}
		}
	}
	env := &envtest.Environment{BinaryAssetsDirectory: testCluster.assets, CRDInstallOptions: envtest.CRDInstallOptions{Paths: paths}}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start an API server of the test's own: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme, err := kubernetes.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, obj := range []client.Object{
		&gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "mcpgate"}, Spec: gwv1.GatewayClassSpec{ControllerName: "mcpgate.dev/gateway-controller"}},
		&gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: "default"}, Spec: gwv1.GatewaySpec{GatewayClassName: "mcpgate",
			Listeners: []gwv1.Listener{{Name: "http", Port: 8080, Protocol: gwv1.HTTPProtocolType}}}},
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("create %T: %v", obj, err)
		}
	}
	ctrl := startController(t, t, cfg, kubernetes.Options{})
	eventually(t, "the Gateway accepted without the optional kinds", func() error {
		var gw gwv1.Gateway
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "gw"}, &gw); err != nil {
			return err
		}
		return condition(gw.Status.Conditions, "Accepted", metav1.ConditionTrue, "", gw.Generation)
	})
	ctrl.stop(t) // fails the test when Run returned an error
}
