package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/internal/admin"
	"github.com/mcpgate/mcpgate/internal/extprocrun"
	"github.com/mcpgate/mcpgate/internal/supervisor"
	"github.com/mcpgate/mcpgate/internal/tasks"
	"github.com/mcpgate/mcpgate/provider/file"
	"github.com/mcpgate/mcpgate/translator"
	"github.com/mcpgate/mcpgate/xds"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// DefaultAdminAddr is where `mcpgate run` serves /metrics, /debug/xds, /healthz and /readyz.
const defaultAdminAddr = "127.0.0.1:19000"

// runConfig is the flags of `mcpgate run`: its own, and ext_proc's as `mcpgate extproc` has them.
type runConfig struct {
	extProcOptions
	files                       stringList
	xdsAddr, extProcAddr, admin string
	// muxAddr is where the mux serves multiplexed MCP backends (each bootstrap's mcpgate_mux).
	muxAddr string
	// socketDir is the folder of the Gateways' mux upstream sockets (runSocketDir; set by serve):
	// "" is os.TempDir(), as `mcpgate bootstrap`'s default.
	socketDir string
	// bindAddress is the address Envoy listeners bind.
	bindAddress string
	// upstreamCA is the CA bundle (an absolute path) that Envoy verifies TLS upstreams with.
	upstreamCA string
	envoyBin   string
	noEnvoy    bool
	envoyArgs  stringList
	// envoyAdmin is the admin address of the first Gateway's Envoy; the next ones take the
	// following ports.
	envoyAdmin *net.TCPAddr
	logLevel   slog.Level
}

func parseRunFlags(args []string) (*runConfig, error) {
	c := &runConfig{}
	fs := flag.NewFlagSet("mcpgate run", flag.ContinueOnError)
	fs.Var(&c.files, "f", "a manifest file or directory (repeatable); watched for changes")
	fs.StringVar(&c.xdsAddr, "xds-addr", bootstrap.DefaultXDSAddr, "where to serve xDS (ADS): HOST:PORT or unix:///PATH")
	fs.StringVar(&c.extProcAddr, "extproc-addr", bootstrap.DefaultExtProcAddr, "where to serve ext_proc: HOST:PORT or unix:///PATH")
	fs.StringVar(&c.admin, "admin-addr", defaultAdminAddr, "where to serve /metrics, /debug/xds, /healthz and /readyz")
	fs.StringVar(&c.muxAddr, "mux-addr", bootstrap.DefaultMuxAddr, "where to serve the mux of multiplexed MCP backends (several targets behind one): HOST:PORT or unix:///PATH")
	fs.StringVar(&c.bindAddress, "bind-address", "127.0.0.1", "the IP address the Gateways' Envoy listeners bind (0.0.0.0: every interface)")
	fs.StringVar(&c.upstreamCA, "upstream-ca-file", translator.DefaultUpstreamCAFile, "the CA bundle (PEM) that Envoy verifies the certificates of TLS targets and backends with")
	c.addFlags(fs)
	fs.StringVar(&c.envoyBin, "envoy-bin", "", "the Envoy binary to start, one per Gateway (default: envoy on PATH, if any)")
	fs.BoolVar(&c.noEnvoy, "no-envoy", false, "start no Envoy even if one is found (the data plane is run separately)")
	fs.Var(&c.envoyArgs, "envoy-arg", "an extra argument for Envoy (repeatable); Envoy runs with -c BOOTSTRAP --log-level info --disable-hot-restart and, unless given here, --file-flush-interval-msec 1000 (its access log is written every second)")
	envoyAdmin := fs.String("envoy-admin-addr", bootstrap.DefaultAdminAddr, "Envoy's admin address for the first Gateway; the next Gateways take the next ports")
	logLevelFlag(fs, &c.logLevel)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: mcpgate run -f PATH... [flags]\n\nServes the Gateways of the manifests: xDS for Envoy, ext_proc, and Envoy itself when found.\n"+
			"Spans go to --otlp-endpoint or the OTEL_EXPORTER_OTLP_* variables' collector, as with mcpgate extproc.\n\nflags:")
		printFlags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if len(c.files) == 0 || fs.NArg() > 0 {
		fs.Usage()
		return nil, errors.New("want -f PATH (and no other argument)")
	}
	if err := checkBindAddress(c.bindAddress); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	var err error
	// Envoy, started here, reads the file: an absolute path whatever its working directory. A
	// file named on the command line must be there (Envoy would refuse every cluster that uses
	// it); the default is read only when a TLS target needs it.
	if c.upstreamCA, err = filepath.Abs(c.upstreamCA); err != nil {
		return nil, fmt.Errorf("--upstream-ca-file: %w", err)
	}
	if flagSet(fs, "upstream-ca-file") {
		if _, err := os.Stat(c.upstreamCA); err != nil {
			return nil, fmt.Errorf("--upstream-ca-file: %w", err)
		}
	}
	if c.envoyAdmin, err = net.ResolveTCPAddr("tcp", *envoyAdmin); err != nil || c.envoyAdmin.IP == nil || c.envoyAdmin.Port == 0 {
		return nil, fmt.Errorf("--envoy-admin-addr %q: want IP:PORT with a port other than 0 (the next Gateways take the next ports)", *envoyAdmin)
	}
	return c, nil
}

// runStandalone is `mcpgate run`: files -> translator -> xDS, ext_proc, admin, and Envoy children.
func runStandalone(ctx context.Context, args []string) error {
	cfg, err := parseRunFlags(args)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.logLevel})), os.Stdout, os.Stderr)
}

// serve runs what `mcpgate run` runs until ctx ends. MCP audit lines and Envoy's access log go to
// stdout, Envoy's own log to stderr.
func serve(ctx context.Context, cfg *runConfig, log *slog.Logger, stdout, stderr io.Writer) error {
	for _, f := range cfg.files {
		// later a path that goes keeps its last good content; at start there is none
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("-f: %w", err)
		}
	}
	if cfg.envoyBin != "" {
		if _, err := exec.LookPath(cfg.envoyBin); err != nil {
			return fmt.Errorf("--envoy-bin: %w", err)
		}
	}
	reg := admin.NewRegistry()
	srv := xds.New(log)
	if err := srv.RegisterMetrics(reg); err != nil {
		return err
	}

	// Listen on everything first: a port in use is an error at start, not later. The servers
	// close their listeners when they stop; closing again on the way out is harmless.
	xdsLis, err := extproc.Listen(cfg.xdsAddr)
	if err != nil {
		return fmt.Errorf("--xds-addr: %w", err)
	}
	defer xdsLis.Close()
	epLis, err := extproc.Listen(cfg.extProcAddr)
	if err != nil {
		return fmt.Errorf("--extproc-addr: %w", err)
	}
	defer epLis.Close()
	adminLis, err := net.Listen("tcp", cfg.admin)
	if err != nil {
		return fmt.Errorf("--admin-addr: %w", err)
	}
	defer adminLis.Close()
	muxLis, err := extprocrun.ListenMux("mux-addr", cfg.muxAddr)
	if err != nil {
		return err
	}
	defer muxLis.Close()

	// The front hop's ext_proc and the mux share it: the mux serves only what ext_proc passed.
	muxSecret := extprocrun.NewMuxSecret()
	// The upstream is read per request: cfg.socketDir is set below.
	muxServer := extprocrun.NewMux(func(gw string) string { return bootstrap.MuxUpstreamAddr(cfg.socketDir, gw) }, muxSecret, log, reg, &cfg.Options)
	ep, stopEP, err := cfg.Start(ctx, extproc.Config{
		XDSAddr: cfg.xdsAddr, NodeCluster: contract.AllGateways, NodeID: "mcpgate-run", Logger: log, Registerer: reg,
		MuxSecret: muxSecret, MuxResolver: muxServer,
	}, stdout)
	if err != nil {
		return err
	}
	defer stopEP()

	var envoys *supervisor.Supervisor
	startEnvoy := "Start one per Gateway with: mcpgate bootstrap --gateway NS/NAME --xds-addr " + cfg.xdsAddr +
		" --extproc-addr " + cfg.extProcAddr + " --mux-addr " + cfg.muxAddr + " > bootstrap.yaml && envoy -c bootstrap.yaml"
	bin := envoyBinary(cfg)
	socketDir, removeSocketDir, err := runSocketDir(bin != "")
	if err != nil {
		return err
	}
	defer removeSocketDir()
	cfg.socketDir = socketDir
	switch {
	case bin != "":
		envoys = supervisor.New(supervisor.Config{
			Bin: bin, XDSAddr: cfg.xdsAddr, ExtProcAddr: cfg.extProcAddr, MuxAddr: cfg.muxAddr,
			SocketDir: cfg.socketDir, AdminAddr: cfg.envoyAdmin, Args: cfg.envoyArgs,
		}, log, stdout, stderr)
	case cfg.noEnvoy:
		log.Info("--no-envoy: the data plane runs separately. " + startEnvoy)
	default:
		log.Warn("no Envoy binary (--envoy-bin, or envoy on PATH): no data plane runs. " + startEnvoy)
	}
	// /metrics serves the statistics of the Envoys it runs after mcpgate's, each labelled with
	// its Gateway; without any, mcpgate's only.
	var metrics prometheus.Gatherer = reg
	if envoys != nil {
		stats, err := admin.NewEnvoyStatsOf(envoys.StatsSources, reg, log)
		if err != nil {
			return err
		}
		metrics = stats.Gatherer(reg)
	}
	p := newPipeline(srv, log, reg, envoys, translator.Options{BindAddress: cfg.bindAddress, MaxBodyBytes: int64(cfg.MaxBodyBytes), UpstreamCAFile: cfg.upstreamCA})

	g := grpc.NewServer(xds.GRPCServerOptions()...)
	srv.Register(g)
	t := tasks.New(ctx)
	t.Go("xDS", func() error { return g.Serve(xdsLis) })
	t.Go("ext_proc", func() error { return ep.Serve(t.Context(), epLis) })
	t.Go("ext_proc policies", func() error { return ep.Run(t.Context()) })
	t.Go("files", func() error { return file.Watch(t.Context(), cfg.files, p.apply) })
	t.OnStop(func() {
		log.Info("shutting down")
		if envoys != nil {
			envoys.StopAll()
		}
	})
	extprocrun.ServeMux(t, muxLis, muxServer)
	t.Serve("admin", adminLis, srv.AdminHandler(metrics, func() string {
		switch rejected := srv.Rejections(); {
		case !p.ready.Load():
			return "no configuration served yet"
		case !ep.Ready():
			return "ext_proc has no policies yet"
		case len(rejected) > 0:
			// a data plane runs without what it rejected (a listener whose port is in use)
			return "the data plane rejected the configuration: " + strings.Join(rejected, "; ")
		}
		return ""
	}, translator.Redacted))
	// xDS streams last as long as their clients: stop them at once (Envoy is gone already).
	t.OnStop(g.Stop)
	log.Info("mcpgate run", "files", cfg.files, "xds", cfg.xdsAddr, "extproc", cfg.extProcAddr, "mux", cfg.muxAddr, "admin", cfg.admin, "bind", cfg.bindAddress)
	if err := t.Wait(); err != nil {
		log.Error("stopped", "error", err)
		return err
	}
	return nil
}

// envoyBinary returns the Envoy to start, or "" for none.
func envoyBinary(cfg *runConfig) string {
	if cfg.noEnvoy {
		return ""
	}
	if cfg.envoyBin != "" {
		return cfg.envoyBin
	}
	bin, _ := exec.LookPath("envoy")
	return bin
}

// runSocketDir returns the folder of the mux upstream sockets of a run's Gateways, and what
// removes it. With Envoys the run starts (supervised), a folder of the run's own, so that two
// runs on one host serving a Gateway of the same name do not take each other's socket (Envoy
// removes a file in the way of a Unix socket it binds). Without (--no-envoy, or no Envoy found),
// "": os.TempDir(), where the Envoys started by hand with `mcpgate bootstrap`'s defaults bind
// theirs.
func runSocketDir(supervised bool) (string, func(), error) {
	if !supervised {
		return "", func() {}, nil
	}
	dir, err := os.MkdirTemp("", "mcpgate-run-") // short: a Unix socket path has at most 107 bytes
	if err != nil {
		return "", nil, fmt.Errorf("folder for the mux upstream sockets: %w", err)
	}
	return dir, func() { _ = os.RemoveAll(dir) }, nil
}

// flagSet reports whether the command line set the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// checkBindAddress checks --bind-address: the IP address Envoy's listeners bind.
func checkBindAddress(a string) error {
	if net.ParseIP(a) == nil {
		return fmt.Errorf("--bind-address %q: want an IP address", a)
	}
	return nil
}
