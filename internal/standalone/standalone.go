// Package standalone is `mcpgate run`: it serves the Gateways of manifest files on one host. The
// files are watched and each state of them translated and served over xDS (the pipeline: what the
// translator refuses is logged with its file, object and field, and an edit that it refuses is not
// served); beside the xDS server run ext_proc, the mux of multiplexed MCP backends, the admin
// endpoint (/metrics, /debug/xds, /healthz, /readyz), and an Envoy per Gateway (package
// supervisor). Errors name the flags of `mcpgate run` that set what failed.
package standalone

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
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

// Config is what `mcpgate run` serves, as its flags set it (checked there).
type Config struct {
	// ExtProc are the settings of the ext_proc and the mux, as `mcpgate extproc` has them.
	ExtProc extprocrun.Options
	// Files are the manifest files and directories (-f), watched for changes.
	Files []string
	// XDSAddr, ExtProcAddr, AdminAddr and MuxAddr are where xDS, ext_proc, the admin endpoint
	// and the mux of multiplexed MCP backends are served (--xds-addr, --extproc-addr,
	// --admin-addr, --mux-addr).
	XDSAddr, ExtProcAddr, AdminAddr, MuxAddr string
	// BindAddress is the IP address the Gateways' Envoy listeners bind (--bind-address).
	BindAddress string
	// UpstreamCAFile is the CA bundle (an absolute path) that Envoy verifies TLS upstreams with
	// (--upstream-ca-file).
	UpstreamCAFile string
	// EnvoyBin is the Envoy binary to start, one per Gateway (--envoy-bin; "": envoy on PATH, if
	// any); NoEnvoy starts none (--no-envoy).
	EnvoyBin string
	NoEnvoy  bool
	// EnvoyArgs are extra arguments of every Envoy (--envoy-arg).
	EnvoyArgs []string
	// EnvoyAdminAddr is the admin address of the first Gateway's Envoy; the next ones take the
	// following ports (--envoy-admin-addr; its port is not 0).
	EnvoyAdminAddr *net.TCPAddr
}

// Serve runs what `mcpgate run` runs, as cfg says, until ctx ends or a part fails. MCP audit
// lines and Envoy's access log go to stdout, Envoy's own log to stderr.
func Serve(ctx context.Context, cfg Config, log *slog.Logger, stdout, stderr io.Writer) error {
	for _, f := range cfg.Files {
		// later a path that goes keeps its last good content; at start there is none
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("-f: %w", err)
		}
	}
	if cfg.EnvoyBin != "" {
		if _, err := exec.LookPath(cfg.EnvoyBin); err != nil {
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
	xdsLis, err := extproc.Listen(cfg.XDSAddr)
	if err != nil {
		return fmt.Errorf("--xds-addr: %w", err)
	}
	defer xdsLis.Close()
	epLis, err := extproc.Listen(cfg.ExtProcAddr)
	if err != nil {
		return fmt.Errorf("--extproc-addr: %w", err)
	}
	defer epLis.Close()
	adminLis, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("--admin-addr: %w", err)
	}
	defer adminLis.Close()
	muxLis, err := extprocrun.ListenMux("mux-addr", cfg.MuxAddr)
	if err != nil {
		return err
	}
	defer muxLis.Close()

	// The front hop's ext_proc and the mux share it: the mux serves only what ext_proc passed.
	muxSecret := extprocrun.NewMuxSecret()
	// The upstream is read per request: socketDir is set below.
	var socketDir string
	muxServer := extprocrun.NewMux(func(gw string) string { return bootstrap.MuxUpstreamAddr(socketDir, gw) }, muxSecret, log, reg, &cfg.ExtProc)
	ep, stopEP, err := cfg.ExtProc.Start(ctx, extproc.Config{
		XDSAddr: cfg.XDSAddr, NodeCluster: contract.AllGateways, NodeID: "mcpgate-run", Logger: log, Registerer: reg,
		MuxSecret: muxSecret, MuxResolver: muxServer,
	}, stdout)
	if err != nil {
		return err
	}
	defer stopEP()

	var envoys *supervisor.Supervisor
	startEnvoy := "Start one per Gateway with: mcpgate bootstrap --gateway NS/NAME --xds-addr " + cfg.XDSAddr +
		" --extproc-addr " + cfg.ExtProcAddr + " --mux-addr " + cfg.MuxAddr + " > bootstrap.yaml && envoy -c bootstrap.yaml"
	bin := envoyBinary(cfg)
	dir, removeSocketDir, err := runSocketDir(bin != "")
	if err != nil {
		return err
	}
	defer removeSocketDir()
	socketDir = dir
	switch {
	case bin != "":
		envoys = supervisor.New(supervisor.Config{
			Bin: bin, XDSAddr: cfg.XDSAddr, ExtProcAddr: cfg.ExtProcAddr, MuxAddr: cfg.MuxAddr,
			SocketDir: socketDir, AdminAddr: cfg.EnvoyAdminAddr, Args: cfg.EnvoyArgs,
		}, log, stdout, stderr)
	case cfg.NoEnvoy:
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
	p := newPipeline(srv, log, reg, envoys, translator.Options{BindAddress: cfg.BindAddress, MaxBodyBytes: int64(cfg.ExtProc.MaxBodyBytes), UpstreamCAFile: cfg.UpstreamCAFile})

	g := grpc.NewServer(xds.GRPCServerOptions()...)
	srv.Register(g)
	t := tasks.New(ctx)
	t.Go("xDS", func() error { return g.Serve(xdsLis) })
	t.Go("ext_proc", func() error { return ep.Serve(t.Context(), epLis) })
	t.Go("ext_proc policies", func() error { return ep.Run(t.Context()) })
	t.Go("files", func() error { return file.Watch(t.Context(), cfg.Files, p.apply) })
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
	log.Info("mcpgate run", "files", cfg.Files, "xds", cfg.XDSAddr, "extproc", cfg.ExtProcAddr, "mux", cfg.MuxAddr, "admin", cfg.AdminAddr, "bind", cfg.BindAddress)
	if err := t.Wait(); err != nil {
		log.Error("stopped", "error", err)
		return err
	}
	return nil
}

// envoyBinary returns the Envoy to start, or "" for none.
func envoyBinary(cfg Config) string {
	if cfg.NoEnvoy {
		return ""
	}
	if cfg.EnvoyBin != "" {
		return cfg.EnvoyBin
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
