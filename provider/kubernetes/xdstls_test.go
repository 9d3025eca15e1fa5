package kubernetes_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestEnsureCA: replicas starting at once end up with one CA (the Secret's), a restart reads the
// same one, and a Secret that holds no CA is an error naming it.
func TestEnsureCA(t *testing.T) {
	ctx := context.Background()
	mustKubectl(t, nil, "create", "namespace", "ca-test")
	const replicas = 4
	cas := make([]*pki.CA, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() { cas[i], errs[i] = kubernetes.EnsureCA(ctx, testCluster.client, "ca-test") })
	}
	wg.Wait()
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		if !cas[i].Cert.Equal(cas[0].Cert) {
			t.Errorf("replica %d has another CA than replica 0", i)
		}
	}
	again, err := kubernetes.EnsureCA(ctx, testCluster.client, "ca-test")
	if err != nil || !again.Cert.Equal(cas[0].Cert) {
		t.Errorf("a restart reads another CA (%v)", err)
	}

	mustKubectl(t, nil, "create", "namespace", "ca-bad")
	if err := testCluster.client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ca-bad", Name: kubernetes.XDSCASecret},
		Data: map[string][]byte{"ca.crt": []byte("not a certificate")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := kubernetes.EnsureCA(ctx, testCluster.client, "ca-bad"); err == nil || !strings.Contains(err.Error(), "ca-bad/mcpgate-xds-ca: data.ca.crt and data.ca.key") {
		t.Errorf("a Secret without a CA: %v", err)
	}
}
