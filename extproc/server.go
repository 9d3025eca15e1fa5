// Package extproc is mcpgate's Envoy external processor: the envoy.service.ext_proc.v3
// ExternalProcessor gRPC service that Envoy calls for every request of a gateway's routes. Per
// request (one gRPC stream) it authenticates the caller (JWT), applies the traffic rules (CEL),
// reads the MCP JSON-RPC bodies in both directions, refuses tool calls the MCP rules do not allow,
// filters tools/list answers, and records every MCP exchange (audit line, metrics, span, and
// Envoy dynamic metadata). Its policies come from the control plane over ADS.
//
// The stream follows Envoy's protocol exactly: one reply per message, in order, of the kind the
// message asks for; headers are read from raw_value; the response body mode is chosen per content
// type with mode_override; an EOF or a cancelled stream is a normal end.
package extproc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/authz"
	"github.com/mcpgate/mcpgate/extproc/bind"
	"github.com/mcpgate/mcpgate/extproc/jwt"
	"github.com/mcpgate/mcpgate/extproc/mcp"
	"github.com/mcpgate/mcpgate/extproc/mux"
	"github.com/mcpgate/mcpgate/extproc/telemetry"
	"github.com/mcpgate/mcpgate/xds/client"
)

// MaxBatchMessages bounds the messages of one JSON-RPC batch. Each request in it is kept until
// its answer (audit, correlation), so without a bound one request body of small messages could
// hold tens of MiB and, over a legacy SSE session, push every other session's requests out of
// the shared table. Clients batch a handful of messages (MCP dropped batches in 2025-06-18).
const MaxBatchMessages = 256

// MaxSessionRequests bounds the requests of one session awaiting their answers in the shared
// session table (legacy SSE requests, and Streamable HTTP requests whose POST's event stream ended
// before their answers): a session that posts more without reading the answers pushes out its own oldest
// requests (audited as unanswered), not other sessions'.
const MaxSessionRequests = 1024

// sessionEntryOverhead is what an entry of the session table holds besides the sizes it is
// given: the exchange and its record.
const sessionEntryOverhead = 512

// Defaults of Config.
const (
	DefaultMaxBodyBytes    = 4 << 20
	DefaultSessionTTL      = 10 * time.Minute
	DefaultMaxSessions     = 1 << 16
	DefaultMaxSessionBytes = 64 << 20
	// DefaultPolicyWait is how long a request on a route naming a policy ext_proc does not have
	// waits for it (well under the ext_proc message timeout the translator sets, 10 s by default).
	DefaultPolicyWait = 2 * time.Second
)

// Config configures a Server.
type Config struct {
	// XDSAddr is the control plane's ADS server ("host:port" or "unix:///path"); Run subscribes
	// there to the policies. Empty: no subscription; policies come from HandlePolicies.
	XDSAddr string
	// XDSTLS, when set, is the client TLS (mutual, see pki.ClientTLS) of the ADS connection.
	XDSTLS *tls.Config
	// NodeCluster is the node group: "NS/GATEWAY" for a sidecar serving one gateway, "*" for a
	// process serving every gateway (default "*"). NodeID defaults to the host name.
	NodeCluster, NodeID string
	// MaxBodyBytes is the largest request body read (default 4 MiB); a larger one is refused with
	// 413. It also bounds what is kept of one response body or server-sent event.
	MaxBodyBytes int
	// Audit receives one JSON line per MCP exchange; nil writes none.
	Audit io.Writer
	// Logger logs; nil discards.
	Logger *slog.Logger
	// Registerer registers the metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// TracerProvider makes the spans; nil makes none.
	TracerProvider trace.TracerProvider
	// Redact says what of tool arguments the audit line and metadata keep.
	Redact Redact
	// JWT tunes the authenticators (remote JWKS fetching, token cache).
	JWT jwt.Options
	// Authz tunes CEL evaluation (cost limit).
	Authz authz.Options
	// SessionTTL, MaxSessions and MaxSessionBytes bound the session table (legacy SSE requests,
	// and Streamable HTTP requests whose POST's event stream ended before their answers): a
	// request waits there for its answer, holding its id, its rendered arguments and its
	// request's headers (the token's claims among them).
	// SessionTTL is how long a request waits there for its answer (default DefaultSessionTTL,
	// 10 min).
	SessionTTL time.Duration
	// MaxSessions is the most requests the table holds over all sessions (default
	// DefaultMaxSessions, 65536); beyond it the oldest is dropped, its outcome no_answer.
	MaxSessions int
	// MaxSessionBytes is the most bytes the table's requests may hold (default
	// DefaultMaxSessionBytes, 64 MiB); beyond it the oldest are dropped, as for MaxSessions.
	MaxSessionBytes int
	// PolicyWait bounds how long a request on a route naming a policy that ext_proc has not
	// received waits for a policy version that has it, before it is refused with 500 (default
	// DefaultPolicyWait; negative: no wait). In Kubernetes a route can reach Envoy before its
	// policy reaches ext_proc. Keep it under the ext_proc message timeout of the routes, or Envoy
	// answers 504 first.
	PolicyWait time.Duration
	// SessionKey seals the MCP session ids clients get to the caller that opened the session
	// (package bind): at least bind.KeySize bytes, the same for every ext_proc serving a Gateway,
	// so that any replica opens a session any other sealed. Empty: a random key of this process,
	// so sessions do not outlive it or move to another replica (their clients start new ones).
	SessionKey []byte
	// MuxSecret is the secret shared with the mux of this process (mux.Options.Secret): on the
	// routes of a multiplexed backend (contract.MetadataTargets) every request ext_proc passes
	// gets contract.HeaderMuxAuth set to it, overwriting a client's value, so that the mux serves
	// only what the front hop authorized. Empty (no mux in this process): the header is removed.
	// Never logged.
	MuxSecret string
	// MuxResolver resolves the bare tool and prompt names of the calls on the routes of a
	// multiplexed backend under prefixMode Never (contract.MetadataMux) to their targets, before
	// the rules judge them: the mux of this process (mux.Server). Nil (no mux in this process):
	// such calls are refused (500), as no rule could judge them by their target.
	MuxResolver MuxResolver
}

// MuxResolver finds the target of a call of a bare name on a prefixMode Never backend
// (mux.Server.Resolve). Its error is a *mux.ResolveError, the answer to give the call.
type MuxResolver interface {
	Resolve(ctx context.Context, q mux.Query) (target string, err error)
}

// DefaultRedactKeys returns the redaction keys of tool arguments unless Redact.Keys says
// otherwise: the usual last words of credentials' names (contract.CredentialKeys). A key matches
// the argument keys that, folded (lower case, without '_', '-' and '.'), end with it
// (telemetry.Options.RedactKeys).
func DefaultRedactKeys() []string { return contract.CredentialKeys() }

// Redact configures what the audit line and Envoy metadata keep of tool arguments.
type Redact struct {
	// Keys are the redaction keys: the values of the argument keys (any depth) that, folded,
	// end with one of them become "[REDACTED]", as do such keys' values in URL queries
	// (telemetry.Options.RedactKeys); nil means DefaultRedactKeys(), an empty list none.
	Keys []string
	// MaxArgumentBytes truncates the arguments kept (default 1 KiB).
	MaxArgumentBytes int
}

// Server is the ext_proc service.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer

	cfg      Config
	log      *slog.Logger
	tel      *telemetry.Telemetry
	env      *authz.Env
	policies policyStore
	sessions *mcp.Sessions[*exchange]
	// bind seals the session ids clients get and opens those they send.
	bind *bind.Binder
	// warned holds the routes whose configuration mismatch was logged (warnOnce).
	warned sync.Map
	// streams holds the state of ended streams for new ones (stream.end).
	streams sync.Pool
}

// New returns a Server with no policies yet: until a policy update brings the policy a route
// names, requests on the route wait for it (Config.PolicyWait), then are refused (fail closed).
func New(cfg Config) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.MaxSessionBytes <= 0 {
		cfg.MaxSessionBytes = DefaultMaxSessionBytes
	}
	if cfg.PolicyWait == 0 {
		cfg.PolicyWait = DefaultPolicyWait
	}
	if cfg.NodeCluster == "" {
		cfg.NodeCluster = contract.AllGateways
	}
	if cfg.NodeID == "" {
		cfg.NodeID, _ = os.Hostname()
		if cfg.NodeID == "" {
			cfg.NodeID = "mcpgate-extproc"
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.JWT.Logger == nil {
		cfg.JWT.Logger = cfg.Logger
	}
	log := cfg.Logger.With("component", "extproc")
	redactKeys := cfg.Redact.Keys
	if redactKeys == nil {
		redactKeys = DefaultRedactKeys()
	}
	tel, err := telemetry.New(telemetry.Options{
		Audit:            cfg.Audit,
		Registerer:       cfg.Registerer,
		TracerProvider:   cfg.TracerProvider,
		RedactKeys:       redactKeys,
		MaxArgumentBytes: cfg.Redact.MaxArgumentBytes,
		Logger:           log,
	})
	if err != nil {
		return nil, fmt.Errorf("ext_proc: %w", err)
	}
	env, err := authz.NewEnv(cfg.Authz)
	if err != nil {
		return nil, fmt.Errorf("ext_proc: %w", err)
	}
	key := cfg.SessionKey
	if len(key) == 0 {
		key = make([]byte, bind.KeySize)
		rand.Read(key)
		log.Info("MCP sessions are sealed with a key of this process: they end when it stops; to keep them across restarts, or to share them between ext_proc replicas, give each the same --session-key-file")
	}
	binder, err := bind.New(key)
	if err != nil {
		return nil, fmt.Errorf("ext_proc: %w", err)
	}
	cfg.SessionKey = nil // the binder holds its own copy: the server keeps no other
	s := &Server{
		bind: binder,
		cfg:  cfg,
		log:  log,
		tel:  tel,
		env:  env,
		sessions: mcp.NewSessions[*exchange](mcp.SessionLimits{
			Entries: cfg.MaxSessions, PerSession: MaxSessionRequests, Bytes: cfg.MaxSessionBytes, TTL: cfg.SessionTTL}),
	}
	s.policies.cur.Store(newPolicySet(0))
	return s, nil
}

// warnOnce logs msg at warn for route, once per kind of message and route: a configuration
// mismatch that every request on the route would otherwise repeat.
func (s *Server) warnOnce(kind, route, msg string) {
	if _, seen := s.warned.LoadOrStore(kind+"\x00"+route, struct{}{}); !seen {
		s.log.Warn(msg, "route", route)
	}
}

// ServerOptions are the options of a gRPC server for s. Envoy's cluster for ext_proc sends HTTP/2
// keepalive pings every 30 s, also on an idle connection; gRPC's default enforcement (pings at
// most every 5 min, none without streams) would answer them with GOAWAY "too_many_pings" and cut
// the streams in flight, which Envoy turns into 500s. A buffered body arrives in one message:
// gRPC's default 4 MiB receive limit would refuse a body at the limit (and Envoy would answer
// 500) before s could answer a body over it with its clear 413, so messages may carry the body
// limit plus the listener's slack (64 KiB) and room for headers and framing. The tap reads the
// route's metadata (a caller's server that sets its own tap reads it otherwise, a little slower).
// Serve uses them; a caller that registers the service on its own server should too.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.MaxRecvMsgSize(s.cfg.MaxBodyBytes + 1<<20),
		// The route's metadata read once per stream, without copies (tapRoute).
		grpc.InTapHandle(tapRoute),
	}
}

// Register adds the ExternalProcessor service to gs (made with ServerOptions).
func (s *Server) Register(gs *grpc.Server) {
	extprocv3.RegisterExternalProcessorServer(gs, s)
}

// Ready reports whether a first policy update was applied (in whole or, with policies that did
// not compile, in part: HandlePolicies).
func (s *Server) Ready() bool { return s.policies.ready.Load() }

// Run subscribes to the policies at Config.XDSAddr (when set) and expires the session table's
// unanswered requests, until ctx ends. The subscription reconnects by itself; Run returns nil when
// ctx ends.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	if s.cfg.XDSAddr != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- client.Run(ctx, client.Config{
				Addr:     s.cfg.XDSAddr,
				Node:     &corev3.Node{Id: s.cfg.NodeID, Cluster: s.cfg.NodeCluster},
				TypeURLs: []string{contract.PolicyTypeURL},
				Handler:  s.HandlePolicies,
				Logger:   s.log,
				TLS:      s.cfg.XDSTLS,
			})
		}()
	}
	tick := time.NewTicker(min(s.cfg.SessionTTL/4, 10*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			s.expireSessions(time.Now())
			return nil
		case err := <-errc:
			if err != nil {
				return err
			}
		case now := <-tick.C:
			s.expireSessions(now)
		}
	}
}

// Close releases the authenticators of the current policies (their JWKS refreshers).
func (s *Server) Close() {
	s.policies.mu.Lock()
	defer s.policies.mu.Unlock()
	ps := s.policies.cur.Swap(newPolicySet(0))
	close(ps.replaced)
	for _, p := range ps.byName {
		if p.auth != nil {
			p.auth.Close()
		}
	}
}

// Listen opens a listener for an ext_proc address: "HOST:PORT" or "unix:///PATH" (a stale socket
// file at PATH is replaced).
func Listen(addr string) (net.Listener, error) {
	network, a, err := contract.SplitAddress(addr)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", addr, err)
	}
	if network == "unix" {
		if fi, err := os.Lstat(a); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if err := os.Remove(a); err != nil {
				return nil, fmt.Errorf("listen %q: remove stale socket: %w", addr, err)
			}
		}
	}
	lis, err := net.Listen(network, a)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", addr, err)
	}
	return lis, nil
}

// ShutdownGrace is how long Serve lets streams in flight finish after its context ends before
// it cuts them (server-sent event streams never finish by themselves).
const ShutdownGrace = 5 * time.Second

// Serve serves the ext_proc service on the listeners until ctx ends, then stops: streams in flight
// get ShutdownGrace to finish.
func (s *Server) Serve(ctx context.Context, listeners ...net.Listener) error {
	gs := grpc.NewServer(s.ServerOptions()...)
	s.Register(gs)
	errc := make(chan error, len(listeners))
	for _, lis := range listeners {
		go func() { errc <- gs.Serve(lis) }()
	}
	select {
	case <-ctx.Done():
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(ShutdownGrace):
			gs.Stop()
			<-stopped
		}
		return nil
	case err := <-errc:
		gs.Stop()
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return fmt.Errorf("ext_proc serve: %w", err)
	}
}
