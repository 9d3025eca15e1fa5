// Package supervisor runs the Envoys of `mcpgate run` as child processes: one per served
// Gateway, each with a bootstrap of its own (written in a folder of the process, which a later
// run removes if this one is killed) and an admin port of its own, restarted when it exits, and
// stopped with mcpgate, even when mcpgate is killed (on Linux).
package supervisor

import (
	"bytes"
	"context"
	"errors"
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

	"github.com/mcpgate/mcpgate/internal/admin"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// Config is what a Supervisor starts its Envoys with.
type Config struct {
	// Bin is the Envoy binary.
	Bin string
	// XDSAddr, ExtProcAddr and MuxAddr are mcpgate's xDS, ext_proc and mux servers, which every
	// bootstrap names (bootstrap.Options).
	XDSAddr, ExtProcAddr, MuxAddr string
	// SocketDir is the folder of the Gateways' mux upstream sockets (bootstrap.MuxUpstreamAddr;
	// "": os.TempDir()).
	SocketDir string
	// AdminAddr is the admin address of the first Gateway's Envoy; the next Gateways take the
	// following ports (`mcpgate run --envoy-admin-addr`). Its port is not 0.
	AdminAddr *net.TCPAddr
	// Args are extra arguments of every Envoy (`mcpgate run --envoy-arg`).
	Args []string
}

// Supervisor runs one Envoy per served Gateway, each with its own bootstrap, and restarts one
// that exits. Create it with New.
type Supervisor struct {
	cfg Config
	log *slog.Logger
	// stdout and stderr receive Envoy's.
	stdout, stderr io.Writer
	// base holds the bootstrap folders of every mcpgate run of this user (bootstrapBase); dir is
	// this supervisor's, made at the first bootstrap and removed by StopAll.
	base, dir string
	wg        sync.WaitGroup
	mu        sync.Mutex
	runs      map[string]context.CancelFunc // Gateway -> stops its Envoy
	// stopped is set by StopAll: a Sync that comes later (a translation finishing while the
	// process stops) starts nothing.
	stopped bool
	// admin is the Envoy admin port given to each Gateway, kept for the life of the process;
	// nextAdmin is the first port not given yet.
	admin     map[string]int
	nextAdmin int
}

// New returns the Supervisor of the Envoys of cfg, which logs to log (component=envoy) and
// passes each Envoy's standard output (its access log) to stdout and its standard error (its own
// log), each line prefixed with "envoy NS/NAME: ", to stderr. It starts none before Sync.
func New(cfg Config, log *slog.Logger, stdout, stderr io.Writer) *Supervisor {
	return &Supervisor{
		cfg: cfg, log: log.With("component", "envoy"), stdout: stdout, stderr: stderr, base: bootstrapBase(),
		runs: map[string]context.CancelFunc{}, admin: map[string]int{}, nextAdmin: cfg.AdminAddr.Port,
	}
}

// Sync starts an Envoy for every Gateway of gateways that has none and stops those of Gateways
// no longer served. After StopAll it does nothing.
func (s *Supervisor) Sync(gateways []string) {
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

// StatsSources returns the admin /stats/prometheus of the Envoy of each Gateway it runs, as the
// Envoys are now (admin.NewEnvoyStatsOf's sources): one that is starting or restarting is there
// too (its statistics cannot be read until it answers), one of a Gateway no longer served is not.
func (s *Supervisor) StatsSources() []admin.EnvoySource {
	ip := s.cfg.AdminAddr.IP
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
func (s *Supervisor) writeBootstrap(gw string) (string, error) {
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
		Gateway: gw, XDSAddr: s.cfg.XDSAddr, ExtProcAddr: s.cfg.ExtProcAddr,
		AdminAddr: net.JoinHostPort(s.cfg.AdminAddr.IP.String(), strconv.Itoa(port)),
		MuxAddr:   s.cfg.MuxAddr, MuxUpstream: bootstrap.MuxUpstreamAddr(s.cfg.SocketDir, gw),
	})
	if err != nil {
		return "", err
	}
	path := filepath.Join(s.dir, strings.ReplaceAll(gw, "/", "_")+".yaml")
	return path, os.WriteFile(path, y, 0o600)
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
func (s *Supervisor) freeAdminPort(gw string) (int, error) {
	const tries = 64
	ip := s.cfg.AdminAddr.IP.String()
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
	return 0, fmt.Errorf("Envoy admin address for Gateway %s: no free port from %s on (--envoy-admin-addr)", gw, s.cfg.AdminAddr)
}

// run runs the Envoy of gw until ctx ends, restarting it (after a growing pause) when it exits.
func (s *Supervisor) run(ctx context.Context, gw, path string) {
	pause := time.Second
	for {
		args := envoyArgs(path, s.cfg.Args)
		cmd := exec.CommandContext(ctx, s.cfg.Bin, args...)
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

// StopAll stops every Envoy and waits for them to exit; none starts afterwards.
func (s *Supervisor) StopAll() {
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
