package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/mcpgate/mcpgate/internal/admin"
	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/internal/tasks"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
	"github.com/mcpgate/mcpgate/translator"
	"github.com/mcpgate/mcpgate/xds"
)

// controllerConfig is what the flags of mcpgate controller ask for.
type controllerConfig struct {
	kubeconfig, xdsAddr, adminAddr string
	// leNamespace is the namespace of the leader election Lease and of the xDS CA's Secret.
	leNamespace string
	// xdsService is the HOST:PORT data planes dial, which the xDS serving certificate names.
	xdsService string
	// extprocImage is --extproc-image ("": this pod's own image).
	extprocImage string
	xdsTLS       bool
	level        slog.Level
	// opts are the provider's options but the logger, the publisher and the registerer; its
	// DataPlane (nil with --deploy-data-plane=false) lacks the extproc image and the xDS CA.
	opts kubernetes.Options
}

// parseControllerFlags reads the flags of mcpgate controller.
func parseControllerFlags(args []string) (*controllerConfig, error) {
	fs := flag.NewFlagSet("mcpgate controller", flag.ContinueOnError)
	var (
		cfg                 controllerConfig
		classes, namespaces stringList
		leaderElect         = fs.Bool("leader-elect", false, "elect one replica (a Lease) to write status and data planes; every replica serves xDS")
		controllerName      = fs.String("controller-name", translator.DefaultControllerName, "the GatewayClass controllerName served")
		clusterDomain       = fs.String("cluster-domain", translator.DefaultClusterDomain, "the cluster's DNS domain: a static target host NAME.NS.svc.DOMAIN is the Service's endpoints (EDS)")
		upstreamCA          = fs.String("upstream-ca-file", translator.DefaultUpstreamCAFile, "the CA bundle (PEM) that the data planes verify the certificates of TLS targets and backends with: a path inside the Envoy image (--envoy-image), not in this controller's")
		dataPlane           = fs.Bool("deploy-data-plane", true, "create each served Gateway's Envoy Deployment, Service and bootstrap ConfigMap")
		envoyImage          = fs.String("envoy-image", kubernetes.DefaultEnvoyImage, "Envoy image of the data planes")
		serviceType         = fs.String("gateway-service-type", string(kubernetes.DefaultServiceType), "type of each Gateway's Service: LoadBalancer, NodePort or ClusterIP")
	)
	fs.StringVar(&cfg.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then the in-cluster service account)")
	fs.StringVar(&cfg.xdsAddr, "xds-addr", ":18000", "listen address of the xDS (ADS) gRPC server")
	fs.StringVar(&cfg.adminAddr, "admin-addr", ":19000", "listen address of /metrics, /debug/xds, /healthz and /readyz")
	fs.StringVar(&cfg.leNamespace, "leader-election-namespace", envOr("POD_NAMESPACE", "mcpgate-system"), "namespace of the leader election Lease")
	fs.StringVar(&cfg.xdsService, "xds-service", "mcpgate-controller.mcpgate-system.svc:18000", "HOST:PORT at which data planes reach this controller's xDS (the name its serving certificate holds)")
	fs.StringVar(&cfg.extprocImage, "extproc-image", "", "mcpgate image of the data planes' extproc sidecar (default: this pod's own image)")
	fs.BoolVar(&cfg.xdsTLS, "xds-tls", true, "serve xDS over mutual TLS: a CA in the Secret mcpgate-xds-ca (--leader-election-namespace), a client certificate per Gateway, each data plane served only its own Gateway (false: plaintext, any client may read every Gateway)")
	logLevelFlag(fs, &cfg.level)
	fs.Var(&classes, "gateway-class", "a GatewayClass name to serve whatever its controllerName (repeatable)")
	fs.Var(&namespaces, "namespace", "watch only this namespace (repeatable; default: all)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: mcpgate controller [flags]\n\n"+
			"Runs in Kubernetes: every replica serves xDS from the cluster's Gateway API and agentgateway\n"+
			"objects; the leader (with --leader-elect; else the one replica) writes their status and deploys\n"+
			"a data plane per Gateway (--deploy-data-plane).\n\nflags:")
		printFlags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch corev1.ServiceType(*serviceType) {
	case corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort, corev1.ServiceTypeClusterIP:
	default:
		return nil, fmt.Errorf("--gateway-service-type %q: want LoadBalancer, NodePort or ClusterIP", *serviceType)
	}
	cfg.opts = kubernetes.Options{
		ControllerName:          *controllerName,
		GatewayClasses:          classes,
		Namespaces:              namespaces,
		LeaderElection:          *leaderElect,
		LeaderElectionNamespace: cfg.leNamespace,
		Translator:              translator.Options{ClusterDomain: *clusterDomain, UpstreamCAFile: *upstreamCA},
	}
	if *dataPlane {
		cfg.opts.DataPlane = &kubernetes.DataPlane{
			XDSAddress:  cfg.xdsService,
			EnvoyImage:  *envoyImage,
			ServiceType: corev1.ServiceType(*serviceType),
		}
	}
	return &cfg, nil
}

// runController runs the Kubernetes controller: every replica watches the cluster and serves
// xDS; the leader also writes status and the per-Gateway data planes.
func runController(ctx context.Context, args []string) error {
	c, err := parseControllerFlags(args)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: c.level}))
	// client-go and controller-runtime log through their own globals; route both to slog.
	klog.SetSlogLogger(logger)
	ctrllog.SetLogger(logr.FromSlogHandler(logger.Handler()))

	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: c.kubeconfig, Precedence: clientcmd.NewDefaultClientConfigLoadingRules().Precedence},
		&clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "mcpgate-controller/" + version

	opts := c.opts
	opts.Logger = logger
	if opts.DataPlane != nil {
		image := c.extprocImage
		if image == "" {
			if image, err = ownImage(ctx, cfg); err != nil {
				return fmt.Errorf("--extproc-image not given and this pod's image unknown: %w", err)
			}
		}
		opts.DataPlane.ExtProcImage = image
	}
	var xdsCreds *tls.Config
	if c.xdsTLS {
		kc, err := client.New(cfg, client.Options{})
		if err != nil {
			return fmt.Errorf("kubernetes client: %w", err)
		}
		ca, err := kubernetes.EnsureCA(ctx, kc, c.leNamespace)
		if err != nil {
			return fmt.Errorf("--xds-tls: %w", err)
		}
		if xdsCreds, err = ca.ServerConfig(c.xdsService); err != nil {
			return fmt.Errorf("--xds-tls: %w", err)
		}
		if opts.DataPlane != nil {
			opts.DataPlane.XDSCA = ca
		}
	}
	return serveController(ctx, logger, cfg, opts, c.xdsAddr, c.adminAddr, xdsCreds)
}

// serveController runs the xDS server, the admin server and the provider until ctx ends or one
// of them fails. With xdsTLS, xDS is served over mutual TLS, each client only the Gateway its
// certificate names (pki.GatewayOf).
func serveController(ctx context.Context, logger *slog.Logger, cfg *rest.Config, opts kubernetes.Options, xdsAddr, adminAddr string, xdsTLS *tls.Config) error {
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

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
