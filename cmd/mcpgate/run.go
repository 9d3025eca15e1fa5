package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/mcpgate/mcpgate/internal/standalone"
	"github.com/mcpgate/mcpgate/translator"
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
	return standalone.Serve(ctx, cfg.config(), slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.logLevel})), os.Stdout, os.Stderr)
}

// config is the standalone.Config of the flags.
func (c *runConfig) config() standalone.Config {
	return standalone.Config{
		ExtProc: c.Options, Files: c.files, XDSAddr: c.xdsAddr, ExtProcAddr: c.extProcAddr, AdminAddr: c.admin, MuxAddr: c.muxAddr,
		BindAddress: c.bindAddress, UpstreamCAFile: c.upstreamCA,
		EnvoyBin: c.envoyBin, NoEnvoy: c.noEnvoy, EnvoyArgs: c.envoyArgs, EnvoyAdminAddr: c.envoyAdmin,
	}
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
