package kubernetes_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestControllerWritesOnlyItsSecrets: with deploy/ installed, the controller's ServiceAccount may
// create and change only Secrets labelled as mcpgate's (deploy/controller/secrets-policy.yaml):
// creating an unlabelled Secret, changing another's Secret or labelling it to take it over are
// refused by the API server; creating a labelled one is not. The writes are server-side dry runs,
// which run admission and store nothing.
func TestControllerWritesOnlyItsSecrets(t *testing.T) {
	installDeploy(t, false)
	const ns = "secrets-policy"
	mustKubectl(t, []byte(`apiVersion: v1
kind: Namespace
metadata: {name: `+ns+`}
---
apiVersion: v1
kind: Secret
metadata: {name: someone-elses, namespace: `+ns+`}
stringData: {password: hunter2}
`), "apply", "-f", "-")
	c := probeClient(t)
	ctx := context.Background()
	secret := func(name string, labels map[string]string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			StringData: map[string]string{"k": "v"}}
	}
	mine := map[string]string{kubernetes.LabelManagedBy: kubernetes.ManagedByValue}
	refused := func(err error) error { return refusedWith("writes only the Secrets it made", err) }
	// The API server loads a new admission policy in the background: wait for it to refuse.
	eventually(t, "creating an unlabelled Secret is refused", func() error {
		return refused(c.Create(ctx, secret("unlabelled", nil), client.DryRunAll))
	})
	patch := client.RawPatch("application/merge-patch+json", []byte(`{"stringData":{"password":"owned"}}`))
	if err := refused(c.Patch(ctx, secret("someone-elses", nil), patch, client.DryRunAll)); err != nil {
		t.Errorf("changing another's Secret: %v", err)
	}
	takeOver := client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"mcpgate"}}}`))
	if err := refused(c.Patch(ctx, secret("someone-elses", nil), takeOver, client.DryRunAll)); err != nil {
		t.Errorf("labelling another's Secret as mcpgate's: %v", err)
	}
	if err := c.Create(ctx, secret("labelled", mine), client.DryRunAll); err != nil {
		t.Errorf("creating a Secret labelled as mcpgate's: %v", err)
	}
}

// refusedWith is nil when err is an admission refusal saying msg.
func refusedWith(msg string, err error) error {
	switch {
	case err == nil:
		return errors.New("allowed")
	case !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), msg):
		return err
	}
	return nil
}
