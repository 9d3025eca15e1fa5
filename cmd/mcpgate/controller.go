package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/mcpgate/mcpgate/internal/controller"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
	"github.com/mcpgate/mcpgate/translator"
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
		dataPlane           = fs.Bool("deploy-data-plane", true, "create each served Gateway's data plane: Envoy Deployment, Service, bootstrap ConfigMap, session key Secret, PodDisruptionBudget and (with --xds-tls) xDS certificate Secret")
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
	return controller.Run(ctx, logger, c.config())
}

// config is the controller.Config of the flags.
func (c *controllerConfig) config() controller.Config {
	return controller.Config{
		Kubeconfig: c.kubeconfig, XDSAddr: c.xdsAddr, AdminAddr: c.adminAddr, CANamespace: c.leNamespace, XDSService: c.xdsService,
		ExtProcImage: c.extprocImage, XDSTLS: c.xdsTLS, Provider: c.opts, Version: version,
	}
}

// envOr returns the environment variable key, or def when it is empty (a flag's default).
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
