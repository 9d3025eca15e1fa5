package extprocrun

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/mux"
	"github.com/mcpgate/mcpgate/internal/admin"
	"github.com/mcpgate/mcpgate/internal/drain"
	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/internal/tasks"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// Config is what `mcpgate extproc` serves, as its flags set it (checked there).
type Config struct {
	Options
	// Listen are the addresses ext_proc is served on (--listen): HOST:PORT or unix:///PATH.
	Listen []string
	// XDSAddr is the control plane's ADS address that the policies come from (--xds-addr).
	XDSAddr string
	// Gateway is the xDS node group, NS/NAME, or contract.AllGateways (--gateway); NodeID the
	// xDS node id ("": the host name).
	Gateway, NodeID string
	// AdminAddr is where /metrics, /healthz and /readyz are served (--admin-addr; "": none).
	AdminAddr string
	// EnvoyStatsURL is the URL of Envoy's /stats/prometheus that /metrics adds (--envoy-stats-url;
	// "": none).
	EnvoyStatsURL string
	// XDSTLSDir holds the xDS client certificate (--xds-tls-dir, pki.ClientTLS; "": plaintext).
	XDSTLSDir string
	// MuxListen is where the mux is served (--mux-listen; "": no mux).
	MuxListen string
	// MuxUpstream is the mux upstream listener of the one Envoy the sidecar serves
	// (--mux-upstream; "": each Gateway's default, bootstrap.MuxUpstreamAddr in os.TempDir()).
	MuxUpstream string
	// DrainEnvoyAdmin is the admin address of the Envoy the sidecar serves, which the admin
	// endpoint's /drain drains (--drain-envoy-admin, drain.Handler; "": no /drain). Its token is
	// the session key's (drain.Token): SessionKeyFile is required. DrainMin and DrainMax bound
	// the drain (--drain-min, --drain-max: drain.Config).
	DrainEnvoyAdmin    string
	DrainMin, DrainMax time.Duration
	// DrainRestartAfter is drain.Config.RestartAfter (--drain-restart-after; 0: never).
	DrainRestartAfter time.Duration
}

// Serve runs `mcpgate extproc` as cfg says until ctx ends or a part fails: ext_proc on
// cfg.Listen, the policies from the control plane's xDS, the admin endpoint and the mux when
// their addresses are set. MCP audit lines go to stdout when cfg.AuditLog says "stdout".
func Serve(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer) error {
	var listeners []net.Listener
	for _, addr := range cfg.Listen {
		lis, err := extproc.Listen(addr)
		if err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		defer lis.Close()
		listeners = append(listeners, lis)
	}
	var muxLis net.Listener
	if cfg.MuxListen != "" {
		var err error
		if muxLis, err = ListenMux("mux-listen", cfg.MuxListen); err != nil {
			return err
		}
		defer muxLis.Close()
	}
	reg := admin.NewRegistry()
	var metrics prometheus.Gatherer = reg
	if cfg.EnvoyStatsURL != "" {
		// The sidecar's Envoy serves its --gateway: its samples carry gateway="NS/NAME", as
		// those of `mcpgate run`'s Envoys do. Serving every Gateway ("*"), none.
		gw := cfg.Gateway
		if gw == contract.AllGateways {
			gw = ""
		}
		envoy, err := admin.NewEnvoyStats(cfg.EnvoyStatsURL, gw, reg, log)
		if err != nil {
			return fmt.Errorf("--envoy-stats-url: %w", err)
		}
		metrics = envoy.Gatherer(reg)
	}
	var adminLis net.Listener
	if cfg.AdminAddr != "" {
		var err error
		if adminLis, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			return fmt.Errorf("--admin-addr: %w", err)
		}
		defer adminLis.Close()
	}

	epc := extproc.Config{XDSAddr: cfg.XDSAddr, NodeCluster: cfg.Gateway, NodeID: cfg.NodeID, Logger: log, Registerer: reg}
	var muxServer *mux.Server
	if muxLis != nil {
		// The front hop's ext_proc and the mux share it: the mux serves only what ext_proc passed.
		epc.MuxSecret = NewMuxSecret()
		muxServer = NewMux(muxUpstreamOf(cfg.MuxUpstream), epc.MuxSecret, log, reg, &cfg.Options)
		epc.MuxResolver = muxServer
	}
	if cfg.XDSTLSDir != "" {
		files, err := bootstrap.TLSDir(cfg.XDSTLSDir, cfg.XDSAddr)
		if err != nil {
			return fmt.Errorf("--xds-tls-dir: %w", err)
		}
		if epc.XDSTLS, err = pki.ClientTLS(cfg.XDSTLSDir, files.ServerName); err != nil {
			return fmt.Errorf("--xds-tls-dir: %w", err)
		}
	}
	var drainer http.Handler
	if cfg.DrainEnvoyAdmin != "" {
		key, err := cfg.sessionKey()
		if err != nil {
			return err
		}
		dc := drain.Config{EnvoyAdmin: cfg.DrainEnvoyAdmin, Token: drain.Token(key), Min: cfg.DrainMin, Max: cfg.DrainMax,
			RestartAfter: cfg.DrainRestartAfter, Log: log}
		if muxServer != nil {
			dc.OnDrain = muxServer.CloseIdleConnections // the mux's idle connections to Envoy's upstream listener
		}
		drainer = drain.Handler(dc)
	}
	srv, stop, err := cfg.Start(ctx, epc, stdout)
	if err != nil {
		return err
	}
	defer stop()

	t := tasks.New(ctx)
	t.Go("ext_proc", func() error { return srv.Serve(t.Context(), listeners...) })
	t.Go("policies", func() error { return srv.Run(t.Context()) })
	t.OnStop(func() { log.Info("shutting down") })
	if adminLis != nil {
		h := srv.AdminHandler(metrics)
		if drainer != nil {
			h.Handle(drain.Path, "drains the data plane's Envoy before the pod stops (its preStop hook; needs the drain token)", drainer)
		}
		t.Serve("admin", adminLis, h)
	}
	if muxLis != nil {
		ServeMux(t, muxLis, muxServer)
	}
	log.Info("mcpgate extproc", "listen", strings.Join(cfg.Listen, ","), "xds", cfg.XDSAddr, "gateway", cfg.Gateway, "admin", cfg.AdminAddr, "mux", cfg.MuxListen, "envoy_stats", cfg.EnvoyStatsURL)
	if err := t.Wait(); err != nil {
		log.Error("stopped", "error", err)
		return err
	}
	return nil
}
