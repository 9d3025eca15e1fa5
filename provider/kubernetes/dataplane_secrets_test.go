package kubernetes_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// refusedSecretWrites is the message of the admission policy TestSecretsStoredFirst sets up to
// make the controller's Secret writes fail.
const refusedSecretWrites = "the test refuses every Secret write in this namespace"

// TestSecretsStoredFirst: a data plane's pod template never names a session key or xDS
// certificate that is not stored. While the API server refuses its Secrets (an admission policy
// here; a quota, a webhook or a transient error in a cluster), the controller applies no
// Deployment: none is created for a new Gateway, and an existing one, whose Secret is gone, keeps
// its pod template however many passes draw a new key (each would roll the pods, to pods that
// cannot mount the Secret). Once the Secrets can be written, they are stored, owned by the
// Deployment, and the pod template carries the hashes of what they hold: the pods roll once.
// The controller runs as the admin: checkRBAC counts any refused request of the controller's
// ServiceAccount as a fault of deploy/ (the tests that run it as that ServiceAccount show that its
// RBAC and policies admit storing the Secrets first and owning them by the Deployment after).
func TestSecretsStoredFirst(t *testing.T) {
	const ctrlName, ns = "test.mcpgate.dev/secrets-first", "secrets-first"
	classAndNamespace(t, ns, ctrlName)
	refuseSecrets(t, ns)
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// A full pass every second: the policy's removal causes none.
	startController(t, t, testCluster.cfg, kubernetes.Options{ControllerName: ctrlName, ResyncPeriod: time.Second, DataPlane: testDataPlane(ca)})
	mustKubectl(t, httpGateway(ns, "gw", ns), "apply", "-f", "-")
	depKey := types.NamespacedName{Namespace: ns, Name: "gw"}
	keyKey := types.NamespacedName{Namespace: ns, Name: "gw-session-key"}

	// A new Gateway whose Secrets cannot be stored gets no Deployment, pass after pass.
	routeAfterPass(t, ns, "gw", "r1")
	routeAfterPass(t, ns, "gw", "r2")
	if err := testCluster.client.Get(t.Context(), depKey, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Fatalf("Deployment %s while its Secrets cannot be stored: %v, want none", depKey, err)
	}
	programmedFalseFor(t, "Secret "+keyKey.String())

	allowSecrets(t, ns)
	first := storedAndRolled(t, ns, nil)

	// The session key's Secret is gone (deleted by hand) and cannot be stored again: the
	// Deployment keeps its pod template.
	refuseSecrets(t, ns)
	mustKubectl(t, nil, "-n", ns, "delete", "secret", "gw-session-key")
	routeAfterPass(t, ns, "gw", "r3")
	routeAfterPass(t, ns, "gw", "r4")
	if dep := get(t, depKey, &appsv1.Deployment{}); dep.Generation != first.Generation ||
		!maps.Equal(dep.Spec.Template.Annotations, first.Spec.Template.Annotations) {
		t.Errorf("Deployment %s changed while its session key could not be stored: generation %d, pod annotations %v; was %d, %v",
			depKey, dep.Generation, dep.Spec.Template.Annotations, first.Generation, first.Spec.Template.Annotations)
	}
	programmedFalseFor(t, "Secret "+keyKey.String())

	allowSecrets(t, ns)
	again := storedAndRolled(t, ns, first)
	// One rollout for the whole outage: the passes after it find the key stored.
	routeAfterPass(t, ns, "gw", "r5")
	if dep := get(t, depKey, &appsv1.Deployment{}); dep.Generation != again.Generation {
		t.Errorf("Deployment %s: generation %d after the Secrets were stored at %d: the pods rolled again", depKey, dep.Generation, again.Generation)
	}
}

// refuseSecrets makes the API server refuse every Secret create and update in namespace ns (a
// ValidatingAdmissionPolicy and its binding, both called ns) and waits until it does. The policy
// is removed when t ends.
func refuseSecrets(t *testing.T, ns string) {
	t.Helper()
	t.Cleanup(func() { allowSecrets(t, ns) })
	mustKubectl(t, []byte(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: `+ns+`}
spec:
  failurePolicy: Fail
  matchConstraints:
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: `+ns+`}}
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [secrets]}
  validations:
  - {expression: "false", message: "`+refusedSecretWrites+`", reason: Forbidden}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: `+ns+`}
spec: {policyName: `+ns+`, validationActions: [Deny]}
`), "apply", "-f", "-")
	// The API server loads a new admission policy in the background: wait for it to refuse.
	probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"}}
	eventually(t, "Secret writes in "+ns+" refused", func() error {
		return refusedWith(refusedSecretWrites, testCluster.client.Create(t.Context(), probe.DeepCopy(), client.DryRunAll))
	})
}

// allowSecrets removes the policy of refuseSecrets (the API server drops it in the background).
func allowSecrets(t *testing.T, ns string) {
	t.Helper()
	mustKubectl(t, nil, "delete", "--ignore-not-found", "validatingadmissionpolicybinding", ns)
	mustKubectl(t, nil, "delete", "--ignore-not-found", "validatingadmissionpolicy", ns)
}

// programmedFalseFor waits until Gateway secrets-first/gw is not Programmed because its Secret
// secret (as "Secret NS/NAME") was refused and its Deployment not applied.
func programmedFalseFor(t *testing.T, secret string) {
	t.Helper()
	eventually(t, "Gateway not programmed, naming "+secret, func() error {
		gw := get(t, types.NamespacedName{Namespace: "secrets-first", Name: "gw"}, &gwv1.Gateway{})
		c := meta.FindStatusCondition(gw.Status.Conditions, "Programmed")
		if c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "apply "+secret) ||
			!strings.Contains(c.Message, refusedSecretWrites) || !strings.Contains(c.Message, "Deployment secrets-first/gw is not applied") {
			return fmt.Errorf("Programmed %+v", c)
		}
		return nil
	})
}

// storedAndRolled waits until Gateway ns/gw's Secrets are stored, owned by its Deployment, whose
// pod template carries the hashes of the session key and certificate they hold, and returns the
// Deployment. With before (the Deployment earlier), the session key must be a new one.
func storedAndRolled(t *testing.T, ns string, before *appsv1.Deployment) *appsv1.Deployment {
	t.Helper()
	hash := func(b []byte) string {
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:8])
	}
	var dep appsv1.Deployment
	eventually(t, "Secrets stored, owned by the Deployment, their hashes on its pod template", func() error {
		if err := testCluster.client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "gw"}, &dep); err != nil {
			return err
		}
		for _, s := range []struct{ name, data, annotation string }{
			{"gw-session-key", kubernetes.SessionKeyFile, kubernetes.AnnotationSessionKeyHash},
			{"gw-xds-tls", pki.CertFile, kubernetes.AnnotationXDSCertHash},
		} {
			var sec corev1.Secret
			if err := testCluster.client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: s.name}, &sec); err != nil {
				return err
			}
			if refs := sec.OwnerReferences; len(refs) != 1 || refs[0].Kind != "Deployment" || refs[0].UID != dep.UID {
				return fmt.Errorf("Secret %s owner references %s, want the Deployment of uid %s", s.name, ownerRefs(refs), dep.UID)
			}
			if got, want := dep.Spec.Template.Annotations[s.annotation], hash(sec.Data[s.data]); got != want {
				return fmt.Errorf("pod template %s %q, want %q, the hash of Secret %s's %s", s.annotation, got, want, s.name, s.data)
			}
		}
		return nil
	})
	if before != nil && dep.Spec.Template.Annotations[kubernetes.AnnotationSessionKeyHash] == before.Spec.Template.Annotations[kubernetes.AnnotationSessionKeyHash] {
		t.Errorf("the session key stored after its Secret was deleted is the one before")
	}
	return &dep
}
