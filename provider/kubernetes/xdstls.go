package kubernetes

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
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

// ServerTLS returns the TLS configuration of the xDS server: a certificate for the host of
// xdsAddress (HOST:PORT, the address data planes dial) issued by ca, made at the first handshake
// and again once a third of its life is left, and client certificates required and verified
// against ca.
func ServerTLS(ca *pki.CA, xdsAddress string) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(xdsAddress)
	if err != nil {
		return nil, fmt.Errorf("xDS address %q: %w", xdsAddress, err)
	}
	var mu sync.Mutex
	var certPEM []byte
	var cert *tls.Certificate
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  ca.Pool(),
		NextProtos: []string{"h2"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			now := time.Now()
			if cert != nil && ca.Current(certPEM, now) {
				return cert, nil
			}
			c, k, err := ca.IssueServer([]string{host}, now)
			if err != nil {
				return nil, err
			}
			pair, err := tls.X509KeyPair(c, k)
			if err != nil {
				return nil, err
			}
			certPEM, cert = c, &pair
			return cert, nil
		},
	}, nil
}
