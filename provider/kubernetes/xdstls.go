package kubernetes

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mcpgate/mcpgate/internal/pki"
)

// XDSCASecret is the Secret, in the controller's namespace, that holds the xDS CA (ca.crt,
// ca.key). The first replica to start creates it; every replica reads it.
const XDSCASecret = "mcpgate-xds-ca"

// Keys of the CA Secret.
const (
	caCertKey = "ca.crt"
	caKeyKey  = "ca.key"
)

// EnsureCA returns the xDS CA that the Secret namespace/XDSCASecret holds, creating the Secret
// with a new CA when there is none (replicas racing to create it all end up with the winner's).
func EnsureCA(ctx context.Context, c client.Client, namespace string) (*pki.CA, error) {
	key := types.NamespacedName{Namespace: namespace, Name: XDSCASecret}
	var sec corev1.Secret
	err := c.Get(ctx, key, &sec)
	if apierrors.IsNotFound(err) {
		ca, cerr := pki.NewCA(time.Now())
		if cerr != nil {
			return nil, cerr
		}
		sec = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: XDSCASecret,
				Labels: map[string]string{LabelManagedBy: ManagedByValue, "app.kubernetes.io/part-of": "mcpgate"}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{caCertKey: ca.CertPEM, caKeyKey: ca.KeyPEM},
		}
		err = c.Create(ctx, &sec)
		if err == nil {
			return ca, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create Secret %s: %w", key, err)
		}
		err = c.Get(ctx, key, &sec)
	}
	if err != nil {
		return nil, fmt.Errorf("read Secret %s: %w", key, err)
	}
	ca, err := pki.ParseCA(sec.Data[caCertKey], sec.Data[caKeyKey])
	if err != nil {
		return nil, fmt.Errorf("Secret %s: data.%s and data.%s: %w (delete the Secret to have a new CA made)", key, caCertKey, caKeyKey, err)
	}
	return ca, nil
}
