package main

import (
	"bytes"
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/internal/admin"
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
	muxLis, err := listenMux("mux-addr", cfg.muxAddr)
	if err != nil {
		return err
	}
	defer muxLis.Close()

	// The front hop's ext_proc and the mux share it: the mux serves only what ext_proc passed.
	muxSecret := newMuxSecret()
	// The upstream is read per request: cfg.socketDir is set below.
	muxServer := newMux(func(gw string) string { return bootstrap.MuxUpstreamAddr(cfg.socketDir, gw) }, muxSecret, log, reg, &cfg.extProcOptions)
	ep, stopEP, err := cfg.start(ctx, extproc.Config{
		XDSAddr: cfg.xdsAddr, NodeCluster: contract.AllGateways, NodeID: "mcpgate-run", Logger: log, Registerer: reg,
		MuxSecret: muxSecret, MuxResolver: muxServer,
	}, stdout)
	if err != nil {
		return err
	}
	defer stopEP()

	var envoys *supervisor
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
		envoys = newSupervisor(bin, cfg, log, stdout, stderr)
	case cfg.noEnvoy:
		log.Info("--no-envoy: the data plane runs separately. " + startEnvoy)
	default:
		log.Warn("no Envoy binary (--envoy-bin, or envoy on PATH): no data plane runs. " + startEnvoy)
	}
	// /metrics serves the statistics of the Envoys it runs after mcpgate's, each labelled with
	// its Gateway; without any, mcpgate's only.
	var metrics prometheus.Gatherer = reg
	if envoys != nil {
		stats, err := admin.NewEnvoyStatsOf(envoys.statsSources, reg, log)
		if err != nil {
			return err
		}
		metrics = stats.Gatherer(reg)
	}
	p := newPipeline(srv, log, reg, envoys, translator.Options{BindAddress: cfg.bindAddress, MaxBodyBytes: int64(cfg.maxBody), UpstreamCAFile: cfg.upstreamCA})

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
			envoys.stopAll()
		}
	})
	serveMux(t, muxLis, muxServer)
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

// supervisor runs one Envoy per served Gateway, each with its own bootstrap, and restarts one
// that exits.
type supervisor struct {
	bin string
	cfg *runConfig
	log *slog.Logger
	// stdout and stderr receive Envoy's.
	stdout, stderr io.Writer
	// base holds the bootstrap folders of every mcpgate run of this user (bootstrapBase); dir is
	// this supervisor's, made at the first bootstrap and removed by stopAll.
	base, dir string
	wg        sync.WaitGroup
	mu        sync.Mutex
	runs      map[string]context.CancelFunc // Gateway -> stops its Envoy
	// stopped is set by stopAll: a sync that comes later (a translation finishing while the
	// process stops) starts nothing.
	stopped bool
	// admin is the Envoy admin port given to each Gateway, kept for the life of the process;
	// nextAdmin is the first port not given yet.
	admin     map[string]int
	nextAdmin int
}

func newSupervisor(bin string, cfg *runConfig, log *slog.Logger, stdout, stderr io.Writer) *supervisor {
	return &supervisor{
		bin: bin, cfg: cfg, log: log.With("component", "envoy"), stdout: stdout, stderr: stderr, base: bootstrapBase(),
		runs: map[string]context.CancelFunc{}, admin: map[string]int{}, nextAdmin: cfg.envoyAdmin.Port,
	}
}

// sync starts an Envoy for every Gateway of gateways that has none and stops those of Gateways
// no longer served. After stopAll it does nothing.
func (s *supervisor) sync(gateways []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	for gw, stop := range s.runs {
		if !slices.Contains(gateways, gw) {
			s.log.Info("stopping Envoy: Gateway no longer served", "gateway", gw)
			stop()
			delete(s.runs, gw)
		}
	}
	for _, gw := range gateways {
		if _, ok := s.runs[gw]; ok {
			continue
		}
		path, err := s.writeBootstrap(gw)
		if err != nil {
			s.log.Error("cannot start Envoy", "gateway", gw, "error", err)
			continue
		}
		ctx, stop := context.WithCancel(context.Background())
		s.runs[gw] = stop
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.run(ctx, gw, path)
		}()
	}
}

// statsSources returns the admin /stats/prometheus of the Envoy of each Gateway it runs, as the
// Envoys are now (admin.NewEnvoyStatsOf's sources): one that is starting or restarting is there
// too (its statistics cannot be read until it answers), one of a Gateway no longer served is not.
func (s *supervisor) statsSources() []admin.EnvoySource {
	ip := s.cfg.envoyAdmin.IP
	// Envoy's admin listens on every address: ask it on the loopback.
	switch {
	case ip.IsUnspecified() && ip.To4() != nil:
		ip = net.IPv4(127, 0, 0, 1)
	case ip.IsUnspecified():
		ip = net.IPv6loopback
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sources := make([]admin.EnvoySource, 0, len(s.runs))
	for gw := range s.runs {
		// a Gateway runs only once writeBootstrap gave it its admin port
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(s.admin[gw]))
		sources = append(sources, admin.EnvoySource{Gateway: gw, URL: "http://" + addr + "/stats/prometheus"})
	}
	return sources
}

// writeBootstrap writes the bootstrap of gw into the supervisor's folder.
func (s *supervisor) writeBootstrap(gw string) (string, error) {
	if s.dir == "" {
		dir, err := bootstrapDir(s.base)
		if err != nil {
			return "", fmt.Errorf("folder for Envoy bootstraps: %w", err)
		}
		s.dir = dir
	}
	port, ok := s.admin[gw]
	if !ok {
		var err error
		if port, err = s.freeAdminPort(gw); err != nil {
			return "", err
		}
		s.admin[gw] = port
	}
	y, err := bootstrap.Generate(bootstrap.Options{
		Gateway: gw, XDSAddr: s.cfg.xdsAddr, ExtProcAddr: s.cfg.extProcAddr,
		AdminAddr: net.JoinHostPort(s.cfg.envoyAdmin.IP.String(), strconv.Itoa(port)),
		MuxAddr:   s.cfg.muxAddr, MuxUpstream: bootstrap.MuxUpstreamAddr(s.cfg.socketDir, gw),
	})
	if err != nil {
		return "", err
	}
	path := filepath.Join(s.dir, strings.ReplaceAll(gw, "/", "_")+".yaml")
	return path, os.WriteFile(path, y, 0o600)
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

// bootstrapBase returns the per-user folder of the Envoy bootstrap folders,
// UserCacheDir/mcpgate/envoy (~/.cache/mcpgate/envoy), or "" when there is no cache folder.
func bootstrapBase() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "mcpgate", "envoy")
}

// bootstrapDir makes a new folder for Envoy bootstraps in base, named after this process
// ("PID-RANDOM"), once it has removed the folders there of processes that are gone: a run killed
// with SIGKILL cannot remove its own, the next run does. Runs alive keep theirs, so concurrent
// runs are safe. With base "", the folder is a temporary one and nothing is removed.
func bootstrapDir(base string) (string, error) {
	if base == "" {
		return os.MkdirTemp("", "mcpgate-envoy-")
	}
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		pid, _, ok := strings.Cut(e.Name(), "-")
		n, err := strconv.Atoi(pid)
		if ok && err == nil && n > 0 && !processAlive(n) {
			_ = os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
	return os.MkdirTemp(base, strconv.Itoa(os.Getpid())+"-")
}

// processAlive reports whether the process pid exists; true when that cannot be told.
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return !errors.Is(err, os.ErrProcessDone)
	}
	defer p.Release()
	return !errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone)
}

// freeAdminPort gives gw the first port from nextAdmin on that nothing listens on, so that an
// Envoy does not fail to start (and restart for ever) on an admin port something else holds.
func (s *supervisor) freeAdminPort(gw string) (int, error) {
	const tries = 64
	ip := s.cfg.envoyAdmin.IP.String()
	for range tries {
		port := s.nextAdmin
		if port > 65535 {
			break
		}
		s.nextAdmin++
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			s.log.Warn("Envoy admin port in use, trying the next one", "gateway", gw, "addr", addr, "error", err)
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("Envoy admin address for Gateway %s: no free port from %s on (--envoy-admin-addr)", gw, s.cfg.envoyAdmin)
}

// run runs the Envoy of gw until ctx ends, restarting it (after a growing pause) when it exits.
func (s *supervisor) run(ctx context.Context, gw, path string) {
	pause := time.Second
	for {
		args := envoyArgs(path, s.cfg.envoyArgs)
		cmd := exec.CommandContext(ctx, s.bin, args...)
		// Stop: SIGTERM, then SIGKILL if Envoy has not exited 10 s later.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 10 * time.Second
		cmd.Stdout = s.stdout // the access log: JSON lines, as Envoy writes them
		cmd.Stderr = &prefixWriter{w: s.stderr, prefix: "envoy " + gw + ": "}
		s.log.Info("starting Envoy", "gateway", gw, "command", cmd.String())
		started := time.Now()
		err := runChild(cmd)
		if ctx.Err() != nil {
			s.log.Info("Envoy stopped", "gateway", gw)
			return
		}
		if time.Since(started) > time.Minute {
			pause = time.Second
		}
		s.log.Error("Envoy exited; restarting", "gateway", gw, "error", err, "in", pause)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
	}
}

// envoyArgs is the command line of an Envoy with the bootstrap at path, then extra. Envoy flushes
// its access log file (stdout here) every 10 s by default: unless extra sets it, every second, so
// each request's line shows while one watches. (Envoy refuses a flag given twice.)
func envoyArgs(path string, extra []string) []string {
	args := []string{"-c", path, "--log-level", "info", "--disable-hot-restart"}
	if !slices.Contains(extra, bootstrap.FileFlushFlag) {
		args = append(args, bootstrap.FileFlushFlag, bootstrap.FileFlushMillis)
	}
	return append(args, extra...)
}

// stopAll stops every Envoy and waits for them to exit; none starts afterwards.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	s.stopped = true
	for gw, stop := range s.runs {
		stop()
		delete(s.runs, gw)
	}
	s.mu.Unlock()
	s.wg.Wait()
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// prefixWriter writes each line to w with a prefix.
type prefixWriter struct {
	w       io.Writer
	prefix  string
	mu      sync.Mutex
	partial []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		if _, err := fmt.Fprintf(p.w, "%s%s", p.prefix, p.partial[:i+1]); err != nil {
			return len(b), err
		}
		p.partial = p.partial[i+1:]
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
