package kubernetes_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestControllerServiceProtocol reads deploy/'s controller Service and Deployment: the xds port
// claims no cleartext HTTP/2 (appProtocol kubernetes.io/h2c) while the controller serves xDS
// over mutual TLS (--xds-tls, on unless the Deployment turns it off): a mesh or load balancer
// that believed it would speak h2c to a TLS server.
func TestControllerServiceProtocol(t *testing.T) {
	var svc corev1.Service
	var dep appsv1.Deployment
	for file, into := range map[string]any{"service.yaml": &svc, "deployment.yaml": &dep} {
		b, err := os.ReadFile(filepath.Join(testCluster.repo, "deploy", "controller", file))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(b, into); err != nil {
			t.Fatalf("deploy/controller/%s: %v", file, err)
		}
	}
	args := dep.Spec.Template.Spec.Containers[0].Args
	tls := !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--xds-tls=f") || a == "--xds-tls=0" })
	for _, p := range svc.Spec.Ports {
		if p.Name == "xds" && tls && p.AppProtocol != nil && *p.AppProtocol == "kubernetes.io/h2c" {
			t.Errorf("deploy/controller/service.yaml: port xds has appProtocol %s, but xDS is mutual TLS (the controller's args %q)", *p.AppProtocol, args)
		}
	}
}
