package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/mux"
	"github.com/mcpgate/mcpgate/internal/tasks"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// muxFlags are the flags of `mcpgate extproc` for the mux of multiplexed MCP backends.
type muxFlags struct {
	// listen is where the mux is served (--mux-listen; "": no mux).
	listen string
	// upstream is the mux upstream listener of the one Envoy the sidecar serves (--mux-upstream;
	// "": each Gateway's default, bootstrap.MuxUpstreamPath in os.TempDir()).
	upstream string
}

// check validates the mux flags.
func (f *muxFlags) check() error {
	if f.upstream != "" {
		if err := checkAddr(f.upstream); err != nil {
			return fmt.Errorf("--mux-upstream: %w", err)
		}
	}
	if f.listen != "" {
		if err := checkAddr(f.listen); err != nil {
			return fmt.Errorf("--mux-listen: %w", err)
		}
	}
	return nil
}

// checkAddr checks an address of the form unix:///PATH or HOST:PORT (contract.SplitAddress).
func checkAddr(addr string) error {
	if _, _, err := contract.SplitAddress(addr); err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	return nil
}

// upstreamOf returns the mux's Options.Upstream: --mux-upstream for every Gateway, or each
// Gateway's default socket (what `mcpgate bootstrap` binds without --mux-upstream).
func (f *muxFlags) upstreamOf() func(gateway string) string {
	if f.upstream != "" {
		return func(string) string { return f.upstream }
	}
	return func(gw string) string { return bootstrap.MuxUpstreamAddr("", gw) }
}

// newMuxSecret returns a new secret for the ext_proc and the mux of this process
// (extproc.Config.MuxSecret, mux.Options.Secret): 32 random bytes, base64url. It lives only in
// the process's memory and is never logged.
func newMuxSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newMux returns the mux of this process. secret is the one this process's ext_proc sets on the
// multiplexed routes' requests (newMuxSecret); the ext_proc also resolves the calls of prefixMode
// Never backends with it (extproc.Config.MuxResolver), through the same upstream clients, each
// resolution bounded by o's --mux-resolve-timeout and kept --mux-resolve-cache-ttl (0: not
// kept); the sessions of SSE targets, and those of HTTP+SSE clients, are bounded by
// --mux-sse-idle-timeout, --mux-max-sse-sessions and --mux-max-sse-sessions-per-caller, and
// counted on reg (mcpgate_mux_sessions).
func newMux(upstream func(gateway string) string, secret string, log *slog.Logger, reg prometheus.Registerer, o *extProcOptions) *mux.Server {
	return mux.New(mux.Options{
		Upstream: upstream, Logger: log.With("component", "mux"), MaxBodyBytes: o.maxBody, Version: version,
		Secret: secret, ResolveTimeout: o.muxResolveTimeout, ResolveCacheTTL: o.muxResolveCacheTTL,
		SSEIdleTimeout: o.muxSSEIdleTimeout, MaxSSESessions: o.muxMaxSSESessions,
		MaxSSESessionsPerCaller: o.muxMaxSSESessionsPerCaller, Registerer: reg,
	})
}

// serveMux serves the mux m on lis until the tasks t stop: then the sessions of SSE targets close
// (their requests in flight fail), the server shuts down, and the requests still served (answer
// streams of calls) end with the tasks' context.
func serveMux(t *tasks.Group, lis net.Listener, m *mux.Server) {
	// Registered before the server's shutdown, so run first: a request that waits for an SSE
	// target's answer ends at once rather than hold the shutdown.
	t.OnStop(m.Close)
	srv := &http.Server{
		Handler:           m,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return t.Context() },
	}
	t.ServeServer("mux", lis, srv)
}

// listenMux listens on a mux address (--mux-listen, run's --mux-addr).
func listenMux(flag, addr string) (net.Listener, error) {
	lis, err := extproc.Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	return lis, nil
}
