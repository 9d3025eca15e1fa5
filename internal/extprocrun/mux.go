package extprocrun

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

	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/mux"
	"github.com/mcpgate/mcpgate/internal/tasks"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// muxUpstreamOf returns the mux's Options.Upstream: upstream (--mux-upstream) for every Gateway,
// or when it is "" each Gateway's default socket (what `mcpgate bootstrap` binds without
// --mux-upstream).
func muxUpstreamOf(upstream string) func(gateway string) string {
	if upstream != "" {
		return func(string) string { return upstream }
	}
	return func(gw string) string { return bootstrap.MuxUpstreamAddr("", gw) }
}

// NewMuxSecret returns a new secret for the ext_proc and the mux of this process
// (extproc.Config.MuxSecret, mux.Options.Secret): 32 random bytes, base64url. It lives only in
// the process's memory and is never logged.
func NewMuxSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewMux returns the mux of this process. secret is the one this process's ext_proc sets on the
// multiplexed routes' requests (NewMuxSecret); the ext_proc also resolves the calls of prefixMode
// Never backends with it (extproc.Config.MuxResolver), through the same upstream clients, each
// resolution bounded by o's --mux-resolve-timeout and kept --mux-resolve-cache-ttl (0: not
// kept); the sessions of SSE targets, and those of HTTP+SSE clients, are bounded by
// --mux-sse-idle-timeout, --mux-max-sse-sessions and --mux-max-sse-sessions-per-caller, and
// counted on reg (mcpgate_mux_sessions).
func NewMux(upstream func(gateway string) string, secret string, log *slog.Logger, reg prometheus.Registerer, o *Options) *mux.Server {
	return mux.New(mux.Options{
		Upstream: upstream, Logger: log.With("component", "mux"), MaxBodyBytes: o.MaxBodyBytes, Version: o.Version,
		Secret: secret, ResolveTimeout: o.MuxResolveTimeout, ResolveCacheTTL: o.MuxResolveCacheTTL,
		SSEIdleTimeout: o.MuxSSEIdleTimeout, MaxSSESessions: o.MuxMaxSSESessions,
		MaxSSESessionsPerCaller: o.MuxMaxSSESessionsPerCaller, Registerer: reg,
	})
}

// ServeMux serves the mux m on lis until the tasks t stop: then the sessions of SSE targets close
// (their requests in flight fail), the server shuts down, and the requests still served (answer
// streams of calls) end with the tasks' context.
func ServeMux(t *tasks.Group, lis net.Listener, m *mux.Server) {
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

// ListenMux listens on a mux address addr; an error names flag (mux-listen, run's mux-addr).
func ListenMux(flag, addr string) (net.Listener, error) {
	lis, err := extproc.Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	return lis, nil
}
