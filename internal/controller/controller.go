// Package controller is `mcpgate controller`, in Kubernetes: every replica serves xDS from the
// cluster's Gateway API and agentgateway objects (package provider/kubernetes); the leader also
// writes their status and deploys a data plane per Gateway, whose ext_proc sidecar runs this
// pod's own image; with mutual TLS, it keeps the xDS CA. Errors name the flags of
// `mcpgate controller` that set what failed.
package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mcpgate/mcpgate/internal/admin"
	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/internal/tasks"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
	"github.com/mcpgate/mcpgate/translator"
	"github.com/mcpgate/mcpgate/xds"
)

// Config is what `mcpgate controller` runs, as its flags set it (checked there).
type Config struct {
	// Kubeconfig is the kubeconfig file (--kubeconfig; "": $KUBECONFIG, ~/.kube/config, then the
	// in-cluster service account).
	Kubeconfig string
	// XDSAddr and AdminAddr are where xDS and the admin endpoint are served (--xds-addr,
	// --admin-addr).
	XDSAddr, AdminAddr string
	// CANamespace is the namespace of the xDS CA's Secret (--leader-election-namespace).
	CANamespace string
	// XDSService is the HOST:PORT data planes dial, which the xDS serving certificate names
	// (--xds-service).
	XDSService string
	// ExtProcImage is the image of the data planes' extproc sidecar (--extproc-image; "": this
	// pod's own image).
	ExtProcImage string
	// XDSTLS serves xDS over mutual TLS (--xds-tls).
	XDSTLS bool
	// Provider are the provider's options but the logger, the publisher and the registerer; its
	// DataPlane (nil: no data planes) lacks the extproc image and the xDS CA, which Run fills in.
	Provider kubernetes.Options
	// Version is the mcpgate version the controller's user agent names.
	Version string
}

// Run runs the controller as c says until ctx ends or a part fails: every replica watches the
// cluster and serves xDS; the leader also writes status and the per-Gateway data planes. It logs
// to logger.
func Run(ctx context.Context, logger *slog.Logger, c Config) error {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: c.Kubeconfig, Precedence: clientcmd.NewDefaultClientConfigLoadingRules().Precedence},
		&clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "mcpgate-controller/" + c.Version

	opts := c.Provider
	opts.Logger = logger
	if opts.DataPlane != nil {
		image := c.ExtProcImage
		if image == "" {
			if image, err = ownImage(ctx, cfg); err != nil {
				return fmt.Errorf("--extproc-image not given and this pod's image unknown: %w", err)
			}
		}
		opts.DataPlane.ExtProcImage = image
	}
	var xdsCreds *tls.Config
	if c.XDSTLS {
		kc, err := client.New(cfg, client.Options{})
		if err != nil {
			return fmt.Errorf("kubernetes client: %w", err)
		}
		ca, err := kubernetes.EnsureCA(ctx, kc, c.CANamespace)
		if err != nil {
			return fmt.Errorf("--xds-tls: %w", err)
		}
		if xdsCreds, err = ca.ServerConfig(c.XDSService); err != nil {
			return fmt.Errorf("--xds-tls: %w", err)
		}
		if opts.DataPlane != nil {
			opts.DataPlane.XDSCA = ca
		}
	}
	return serve(ctx, logger, cfg, opts, c.XDSAddr, c.AdminAddr, xdsCreds)
}

// serve runs the xDS server, the admin server and the provider until ctx ends or one
// of them fails. With xdsTLS, xDS is served over mutual TLS, each client only the Gateway its
// certificate names (pki.GatewayOf).
func serve(ctx context.Context, logger *slog.Logger, cfg *rest.Config, opts kubernetes.Options, xdsAddr, adminAddr string, xdsTLS *tls.Config) error {
	reg := admin.NewRegistry()
	srv := xds.New(logger)
	if err := srv.RegisterMetrics(reg); err != nil {
		return err
	}
	opts.Publisher = srv
	opts.Registerer = reg
	prov, err := kubernetes.New(cfg, opts)
	if err != nil {
		return err
	}
	xdsLis, err := net.Listen("tcp", xdsAddr)
	if err != nil {
		return fmt.Errorf("--xds-addr: %w", err)
	}
	defer xdsLis.Close()
	adminLis, err := net.Listen("tcp", adminAddr)
	if err != nil {
		return fmt.Errorf("--admin-addr: %w", err)
	}
	defer adminLis.Close()

	gopts := xds.GRPCServerOptions()
	if xdsTLS != nil {
		creds, err := srv.MutualTLS(xdsTLS, pki.GatewayOf)
		if err != nil {
			return err
		}
		gopts = append(gopts, creds)
	}
	g := grpc.NewServer(gopts...)
	srv.Register(g)
	t := tasks.New(ctx)
	t.Go("xDS", func() error { return g.Serve(xdsLis) })
	t.Go("kubernetes", func() error { return prov.Run(t.Context()) })
	t.OnStop(func() { logger.Info("shutting down") })
	// a data plane's NACK does not make the controller unready: it serves every data plane
	t.Serve("admin", adminLis, srv.AdminHandler(reg, admin.Awaiting(prov.Ready, "the cluster's objects not yet read and served"), translator.Redacted))
	// Envoy and the extproc sidecars reconnect to another replica.
	t.OnStop(g.Stop)
	logger.Info("mcpgate controller", "xds", xdsAddr, "admin", adminAddr, "controller", opts.ControllerName,
		"gatewayClasses", opts.GatewayClasses, "namespaces", opts.Namespaces, "leaderElection", opts.LeaderElection, "xdsMutualTLS", xdsTLS != nil)
	if err := t.Wait(); err != nil {
		logger.Error("stopped", "error", err)
		return err
	}
	return nil
}

// ownImage returns the image of this pod's "controller" container (POD_NAMESPACE and POD_NAME
// from the downward API), so that data planes run the same mcpgate version as the controller.
func ownImage(ctx context.Context, cfg *rest.Config) (string, error) {
	ns, name := os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME")
	if ns == "" || name == "" {
		return "", errors.New("POD_NAMESPACE and POD_NAME are not set")
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return "", err
	}
	var pod corev1.Pod
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pod); err != nil {
		return "", fmt.Errorf("read pod %s/%s: %w", ns, name, err)
	}
	for _, ct := range pod.Spec.Containers {
		if ct.Name != "controller" {
			continue
		}
		for _, st := range pod.Status.ContainerStatuses {
			if st.Name == ct.Name {
				return pinnedImage(ct.Image, st.ImageID), nil
			}
		}
		return ct.Image, nil
	}
	return "", fmt.Errorf("pod %s/%s has no container named controller", ns, name)
}

// pinnedImage returns image pinned to the digest the kubelet reports in imageID
// ("REPO@sha256:..."), so the sidecars run the controller's exact bits even when its tag moves;
// image unchanged when it has a digest already or imageID has none.
func pinnedImage(image, imageID string) string {
	_, digest, ok := strings.Cut(imageID, "@")
	if !ok || strings.Contains(image, "@") || !strings.HasPrefix(digest, "sha256:") {
		return image
	}
	repo := image
	// A tag follows the last ':' after the last '/' (a ':' before it is a registry's port).
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	return repo + "@" + digest
}
