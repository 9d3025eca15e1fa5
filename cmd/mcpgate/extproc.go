package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/mux"
	"github.com/mcpgate/mcpgate/extproc/telemetry"
	"github.com/mcpgate/mcpgate/internal/admin"
	"github.com/mcpgate/mcpgate/internal/drain"
	"github.com/mcpgate/mcpgate/internal/extprocrun"
	"github.com/mcpgate/mcpgate/translator"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// extProcOptions are the ext_proc flags that `mcpgate extproc` and `mcpgate run` share: addFlags
// binds them, check validates them and sets what they make of them in Options.
type extProcOptions struct {
	extprocrun.Options
	// redact is --redact-keys as given (check sets Options.RedactKeys).
	redact string
	// policyWait is --policy-wait as given, 0 for no wait (check sets Options.PolicyWait).
	policyWait time.Duration
}

// addFlags adds the ext_proc flags to fs.
func (o *extProcOptions) addFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.MaxBodyBytes, "max-body-bytes", extproc.DefaultMaxBodyBytes, "largest MCP request body read; a larger one is refused with 413")
	fs.StringVar(&o.AuditLog, "audit-log", "stdout", `where the JSON audit lines go: "stdout", "none" or a file path (appended)`)
	fs.StringVar(&o.OTLPEndpoint, "otlp-endpoint", "", "OTLP gRPC collector for spans (http://HOST:4317 without TLS); default OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT; none when all are empty")
	fs.DurationVar(&o.policyWait, "policy-wait", extproc.DefaultPolicyWait, "how long a request whose route names a policy not received yet waits for it before a 500 (0: no wait); keep it under the ext_proc message timeout of the routes (10s in what mcpgate serves)")
	fs.StringVar(&o.SessionKeyFile, "session-key-file", "", "file whose bytes (at least 32) seal each MCP session id to the caller that opened it; every ext_proc of a gateway needs the same (in Kubernetes each gateway's Secret NAME-session-key); default: a random key of this process, so sessions end with it")
	fs.DurationVar(&o.MuxResolveTimeout, "mux-resolve-timeout", mux.DefaultResolveTimeout, "how long the front hop waits for the targets' lists to resolve the target of a call on a prefixMode Never backend; a target that has not answered by then failed (skipped under FailOpen). Keep it well below the routes' ext_proc message timeout (10s in what mcpgate serves), at which Envoy answers the call 504")
	fs.DurationVar(&o.MuxResolveCacheTTL, "mux-resolve-cache-ttl", mux.DefaultResolveCacheTTL, "how long the front hop keeps the targets' lists of a session's tools (prompts) to resolve the next calls on a prefixMode Never backend without listing again: a tool moved or removed since may fail a call that long (a call is only ever sent to the target it was judged for); a name not kept is listed afresh; 0 lists for every call")
	fs.DurationVar(&o.MuxSSEIdleTimeout, "mux-sse-idle-timeout", mux.DefaultSSEIdleTimeout, "how long the mux keeps a session of an HTTP+SSE target (its GET stream to the target) without a request in flight or a GET open, and a session of an HTTP+SSE client without a POST being served (its stream then ends); the client's next request is then 404 and the client starts a new session")
	fs.IntVar(&o.MuxMaxSSESessions, "mux-max-sse-sessions", mux.DefaultMaxSSESessions, "how many sessions of HTTP+SSE targets the mux holds at once (each a GET stream to its target), how many of HTTP+SSE clients (each the client's stream), and how many merged streams (a GET or subscriptions/listen of a multiplexed backend: each a stream of every target), counted apart; an initialize beyond them fails with -32603 naming the limit, a stream beyond is answered 503")
	fs.IntVar(&o.MuxMaxSSESessionsPerCaller, "mux-max-sse-sessions-per-caller", mux.DefaultMaxSSESessionsPerCaller, "how many of the sessions --mux-max-sse-sessions bounds one caller holds, of each kind (a verified token's issuer and subject, or without a token the client's address: its IP, an IPv6 address's /64); an initialize or a stream beyond is answered 429 with Retry-After; 0 means the default")
	fs.StringVar(&o.redact, "redact-keys", strings.Join(extproc.DefaultRedactKeys(), ","), `comma-separated redaction keys: the audit log and access log replace by [REDACTED] the value of every tool argument key (any depth) that ends with one of them, compared in lower case without '_', '-' and '.' ("token" hides github_token and accessToken, not max_tokens), and such keys' values in URL queries; "" for none`)
}

// check validates the parsed flags and fills in the rest of Options: RedactKeys, PolicyWait, and
// Version (this binary's).
func (o *extProcOptions) check() error {
	if o.policyWait < 0 {
		return fmt.Errorf("--policy-wait %s: must not be negative", o.policyWait)
	}
	if err := translator.CheckMaxBodyBytes(int64(o.MaxBodyBytes)); err != nil {
		return err
	}
	if err := telemetry.CheckOTLPEndpoint(o.OTLPEndpoint); err != nil {
		return fmt.Errorf("--otlp-endpoint: %w", err)
	}
	if o.MuxResolveTimeout <= 0 {
		return fmt.Errorf("--mux-resolve-timeout %s: must be positive", o.MuxResolveTimeout)
	}
	if o.MuxResolveCacheTTL < 0 {
		return fmt.Errorf("--mux-resolve-cache-ttl %s: must not be negative", o.MuxResolveCacheTTL)
	}
	if o.MuxSSEIdleTimeout <= 0 {
		return fmt.Errorf("--mux-sse-idle-timeout %s: must be positive", o.MuxSSEIdleTimeout)
	}
	if o.MuxMaxSSESessions <= 0 {
		return fmt.Errorf("--mux-max-sse-sessions %d: must be positive", o.MuxMaxSSESessions)
	}
	if o.MuxMaxSSESessionsPerCaller < 0 {
		return fmt.Errorf("--mux-max-sse-sessions-per-caller %d: must not be negative (0 means the default, %d)", o.MuxMaxSSESessionsPerCaller, mux.DefaultMaxSSESessionsPerCaller)
	}
	o.PolicyWait = policyWait(o.policyWait)
	o.Version = version
	o.RedactKeys = []string{} // "" redacts nothing; nil would mean extproc's default
	for _, k := range strings.Split(o.redact, ",") {
		if k = strings.TrimSpace(k); k != "" {
			if strings.Trim(k, "_-.") == "" {
				// Compared without its separators, it would be empty and hide every value.
				return fmt.Errorf("--redact-keys: key %q is only '_', '-' or '.', which keys are compared without", k)
			}
			o.RedactKeys = append(o.RedactKeys, k)
		}
	}
	return nil
}

// extProcFlags are the flags of `mcpgate extproc`.
type extProcFlags struct {
	extProcOptions
	// listen are the addresses ext_proc is served on (--listen, or its default).
	listen                          []string
	xdsAddr, gateway, nodeID, admin string
	// envoyStats is the URL of Envoy's /stats/prometheus that /metrics adds ("": none).
	envoyStats string
	// xdsTLSDir holds the xDS client certificate (--xds-tls-dir, pki.ClientTLS).
	xdsTLSDir string
	logLevel  slog.Level
	mux       muxFlags
	// drainEnvoyAdmin is --drain-envoy-admin; drainMin and drainMax --drain-min, --drain-max.
	drainEnvoyAdmin    string
	drainMin, drainMax time.Duration
	// drainRestartAfter is --drain-restart-after.
	drainRestartAfter time.Duration
}

func parseExtProcFlags(args []string) (*extProcFlags, error) {
	f := &extProcFlags{}
	fs := flag.NewFlagSet("mcpgate extproc", flag.ContinueOnError)
	var listen stringList
	fs.Var(&listen, "listen", `where to serve ext_proc: HOST:PORT or unix:///PATH (repeatable; default `+bootstrap.DefaultExtProcAddr+`; the sidecar deployment serves only a Unix socket)`)
	fs.StringVar(&f.xdsAddr, "xds-addr", "127.0.0.1:18000", `control plane ADS address to get policies from ("HOST:PORT" or "unix:///PATH")`)
	fs.StringVar(&f.gateway, "gateway", contract.AllGateways, `the gateway served, NS/NAME (its xDS node group), or "*" for every gateway`)
	fs.StringVar(&f.nodeID, "node-id", "", "xDS node id (default: the host name)")
	fs.StringVar(&f.xdsTLSDir, "xds-tls-dir", "", "mutual TLS to the control plane with the certificate in this directory (tls.crt, tls.key, ca.crt: the Kubernetes data plane's Secret); the server must name --xds-addr's host")
	fs.StringVar(&f.admin, "admin-addr", "127.0.0.1:19002", `where to serve /metrics, /healthz and /readyz ("" for none)`)
	fs.StringVar(&f.envoyStats, "envoy-stats-url", "", `Envoy's admin /stats/prometheus (e.g. http://127.0.0.1:15000/stats/prometheus, the bootstrap's --envoy-admin-addr): /metrics then serves Envoy's statistics after mcpgate's, read at each scrape, each sample labelled gateway="NS/NAME" of --gateway (none with "*"), and mcpgate_envoy_stats_up says whether they could be; "" for none`)
	fs.StringVar(&f.mux.listen, "mux-listen", "", `where to serve the mux of multiplexed MCP backends (several targets behind one), unix:///PATH or HOST:PORT, as the bootstrap's --mux-addr names it; "" for none`)
	fs.StringVar(&f.mux.upstream, "mux-upstream", "", "the mux upstream listener of Envoy (unix:///PATH or HOST:PORT, as the bootstrap's --mux-upstream) through which the mux reaches the targets, for every gateway (the sidecar's one Envoy); default: each gateway's mcpgate-up-HASH.sock in the temporary folder, as mcpgate bootstrap's default")
	fs.StringVar(&f.drainEnvoyAdmin, "drain-envoy-admin", "", `the admin address (HOST:PORT) of the Envoy this sidecar serves: --admin-addr then serves /drain, which the data plane pod's preStop hook calls to drain Envoy before it stops (with the token of --session-key-file's key, which it needs); "" for none`)
	fs.DurationVar(&f.drainMin, "drain-min", drain.DefaultMin, "how long /drain waits at least after Envoy starts draining (while load balancers stop sending the pod connections)")
	fs.DurationVar(&f.drainMax, "drain-max", drain.DefaultMax, "how long /drain waits at most for Envoy's downstream connections to close; the pod's terminationGracePeriodSeconds must be longer")
	fs.DurationVar(&f.drainRestartAfter, "drain-restart-after", 0, "tell Envoy to quit (to be started again) when it is still up this long after a /drain began: a drain its pod's termination did not follow; longer than the pod's grace period and Envoy's --drain-time-s; 0: never")
	f.addFlags(fs)
	logLevelFlag(fs, &f.logLevel)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: mcpgate extproc [flags]\n\n"+
			"Serves the ext_proc gRPC service alone, as the sidecar next to a gateway's Envoy does: it takes\n"+
			"the policies from the control plane's xDS (--xds-addr) and judges, logs and traces each MCP request.\n\nflags:")
		printFlags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	f.listen = listen
	if len(f.listen) == 0 {
		f.listen = []string{bootstrap.DefaultExtProcAddr}
	}
	for _, addr := range f.listen {
		if err := checkAddr(addr); err != nil {
			return nil, fmt.Errorf("--listen %w", err)
		}
	}
	if err := checkAddr(f.xdsAddr); err != nil {
		return nil, fmt.Errorf("--xds-addr %w", err)
	}
	if f.gateway != contract.AllGateways && strings.Count(f.gateway, "/") != 1 {
		return nil, fmt.Errorf("--gateway %q: want NAMESPACE/NAME or *", f.gateway)
	}
	if f.envoyStats != "" {
		if f.admin == "" {
			return nil, errors.New(`--envoy-stats-url: /metrics serves Envoy's statistics, but --admin-addr "" serves no /metrics`)
		}
		if err := admin.CheckEnvoyStatsURL(f.envoyStats); err != nil {
			return nil, fmt.Errorf("--envoy-stats-url: %w", err)
		}
	}
	if f.drainEnvoyAdmin != "" {
		if f.admin == "" || f.SessionKeyFile == "" {
			return nil, errors.New(`--drain-envoy-admin: /drain is served on --admin-addr (not "") and checks the token of --session-key-file's key (not "")`)
		}
		if err := checkAddr(f.drainEnvoyAdmin); err != nil || strings.HasPrefix(f.drainEnvoyAdmin, "unix://") {
			return nil, fmt.Errorf("--drain-envoy-admin %q: want HOST:PORT", f.drainEnvoyAdmin)
		}
	}
	if f.drainMin <= 0 || f.drainMax < f.drainMin {
		return nil, fmt.Errorf("--drain-min %s, --drain-max %s: want 0 < min <= max", f.drainMin, f.drainMax)
	}
	if f.drainRestartAfter != 0 && f.drainRestartAfter <= f.drainMax {
		return nil, fmt.Errorf("--drain-restart-after %s: want 0 (never) or more than --drain-max %s", f.drainRestartAfter, f.drainMax)
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	if err := f.mux.check(); err != nil {
		return nil, err
	}
	return f, nil
}

// policyWait maps --policy-wait to extproc.Config.PolicyWait, where 0 means the default and a
// negative value no wait.
func policyWait(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// runExtProc serves ext_proc alone, as the sidecar next to a gateway's Envoy does.
func runExtProc(ctx context.Context, args []string) error {
	f, err := parseExtProcFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: f.logLevel}))
	return extprocrun.Serve(ctx, f.config(), log, os.Stdout)
}

// config is the extprocrun.Config of the flags.
func (f *extProcFlags) config() extprocrun.Config {
	return extprocrun.Config{
		Options: f.Options, Listen: f.listen, XDSAddr: f.xdsAddr, Gateway: f.gateway, NodeID: f.nodeID, AdminAddr: f.admin,
		EnvoyStatsURL: f.envoyStats, XDSTLSDir: f.xdsTLSDir, MuxListen: f.mux.listen, MuxUpstream: f.mux.upstream,
		DrainEnvoyAdmin: f.drainEnvoyAdmin, DrainMin: f.drainMin, DrainMax: f.drainMax, DrainRestartAfter: f.drainRestartAfter,
	}
}
