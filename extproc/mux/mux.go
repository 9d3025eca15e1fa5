// Package mux serves a multiplexed AgentgatewayBackend: one MCP session of the client fanned out
// to the backend's targets, whose tools and prompts it names TARGET_name (bare under prefixMode
// Never, where the front hop resolves a call's target with Server.Resolve and names it in
// contract.HeaderMuxTarget) and whose resources TARGET+uri (docs/design.md, "Multiplexing", "The
// mux", "prefixMode Never").
//
// Envoy's front hop (ext_proc: JWT, rules, audit) sends a multiplexed route's requests to the mux
// with the contract.HeaderMux header, which describes the backend (contract.Mux). The mux reaches
// each target back through the Gateway's Envoy, on its mux upstream listener
// (contract.MuxUpstreamListener), with contract.HeaderMuxCluster naming the target's cluster, so
// that load balancing, TLS and session pinning stay Envoy's. The session id the client holds
// (sealed by the front hop) lists the targets' own session ids.
//
// The mux speaks Streamable HTTP to the client and to the targets, but to those that speak HTTP+SSE
// (MCP 2024-11-05, contract.MuxTarget.Protocol contract.TransportSSE): its SSE bridge (sseBridge)
// holds their GET streams and makes them look like Streamable HTTP targets to the rest of the
// mux. Clients that speak HTTP+SSE are served too (legacyClients): their stream and POSTs become
// the Streamable HTTP requests the mux serves. These two session tables are the mux's only state
// of sessions: a session of an SSE target, or of an HTTP+SSE client, lives in the process that
// opened it. A backend with contract.Mux.Bridge (one target) is passed through:
// the names, URIs and initialize answer are the target's own. JSON-RPC batches are refused
// (-32600): MCP 2025-06-18 removed them, and no MCP SDK sends them.
package mux

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// DefaultMaxBodyBytes is the default of Options.MaxBodyBytes.
const DefaultMaxBodyBytes = 4 << 20

// DefaultStreamOpenTimeout is the default of Options.StreamOpenTimeout: servers answer a GET's
// headers at once (the stream's events come later).
const DefaultStreamOpenTimeout = 10 * time.Second

// DefaultTargetTimeout is the default of Options.TargetTimeout: long enough for a server that
// starts slowly or lists many tools, short enough that a target that hangs does not hold its
// backend's sessions and lists for ever.
const DefaultTargetTimeout = 30 * time.Second

// DefaultResumeDelay is the default of Options.ResumeDelay: the go-sdk client's first
// reconnection delay, in the region of the few seconds the SSE specification suggests.
const DefaultResumeDelay = time.Second

// DefaultResolveTimeout is the default of Options.ResolveTimeout: half the ext_proc message
// timeout's default (translator.DefaultMessageTimeout, 10 s), so that a target that does not
// answer its list fails the resolution (skipped under FailOpen) before Envoy gives the call up
// with a 504.
const DefaultResolveTimeout = 5 * time.Second

// DefaultMaxPages is the default of Options.MaxPages: as agentgateway, which follows at most 64
// pages of a target's list.
const DefaultMaxPages = 64

// ServerName is the serverInfo name of the mux's initialize answer.
const ServerName = "mcpgate"

// ServerRequestIDPrefix starts the id the mux gives a target's request to the client (a
// server-to-client request, such as elicitation or sampling, in a call's event stream or on the
// GET stream):
// ServerRequestIDPrefix + TARGET + ":" + the target's id as JSON, a string. The client's answer
// carries it back, and the mux sends it to TARGET with the target's id.
const ServerRequestIDPrefix = "mcpgate-mux:"

// Options configure the mux.
type Options struct {
	// Upstream returns the address of the mux upstream listener of the Envoy of a Gateway
	// ("NAMESPACE/NAME"): "unix:///PATH" or "HOST:PORT". Required.
	Upstream func(gateway string) string
	// Logger logs the targets' failures; nil logs nothing.
	Logger *slog.Logger
	// MaxBodyBytes bounds a client's request body, a target's answer the mux reads whole
	// (initialize, the lists) and one event of a streamed answer; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int
	// MaxPages bounds the pages of one target's list the mux follows (nextCursor); 0 means
	// DefaultMaxPages.
	MaxPages int
	// StreamOpenTimeout bounds the wait for a target's answer to a GET (the headers of its
	// server-to-client stream); 0 means DefaultStreamOpenTimeout. A target that does not answer
	// in time fails that GET, so that it cannot hold the client's merged stream back.
	StreamOpenTimeout time.Duration
	// TargetTimeout bounds the wait for each target's answer to what the mux sends to every
	// target of a session (initialize, the lists, logging/setLevel, the client's notifications,
	// DELETE, server/discover): a target that has not answered by then counts as failed (left
	// out under FailOpen; under FailClosed the request's -32603 names it), so that one target
	// that hangs holds no request for ever. A call routed to one target is not bounded (a tool
	// may run long). 0 means DefaultTargetTimeout.
	TargetTimeout time.Duration
	// ResumeDelay is the wait before the mux resumes a target's answer stream that ended without
	// the answer (SSE polling, a reset) for a client that cannot resume it itself (an HTTP+SSE
	// client: forward) when the target has not asked for another (an event's retry field); 0
	// means DefaultResumeDelay.
	ResumeDelay time.Duration
	// ResolveTimeout bounds Resolve: the lists of every target of the session (all their pages)
	// must have come by then; a target whose list has not counts as failed (skipped under
	// FailOpen, the call's -32603 naming it under FailClosed). 0 means DefaultResolveTimeout. It
	// must be well below the ext_proc message timeout (translator Options.MessageTimeout), at
	// which Envoy answers the call 504 whatever Resolve would have found.
	ResolveTimeout time.Duration
	// ResolveCacheTTL is how long Resolve keeps a complete resolution of a session's tools
	// (prompts) to answer the calls that follow without listing the targets again (resolveCache):
	// the staleness bound of the target a call is sent to, which the front hop judges the call as
	// whatever the cache said. 0 (or less) disables the cache; cmd/mcpgate's default is
	// DefaultResolveCacheTTL.
	ResolveCacheTTL time.Duration
	// Version is the serverInfo version of the initialize answer.
	Version string
	// SSEIdleTimeout closes a session of an SSE target (its GET stream) that had no request in
	// flight and no GET open for that long, and a session of an HTTP+SSE client (legacyClients)
	// none of whose POSTs was served for that long; 0 means DefaultSSEIdleTimeout.
	SSEIdleTimeout time.Duration
	// MaxSSESessions bounds the sessions of SSE targets open at once (each holds a GET stream to
	// its target): an initialize beyond it fails (503 from the bridge, the client's -32603 naming
	// the limit). It bounds the sessions of HTTP+SSE clients as well, counted apart (each holds
	// the client's stream): a stream beyond is answered 503; and the merged server-to-client
	// streams (GET, subscriptions/listen: each holds a stream of every target), counted apart too.
	// 0 means DefaultMaxSSESessions.
	MaxSSESessions int
	// MaxSSESessionsPerCaller bounds the sessions (and streams) of each kind MaxSSESessions
	// bounds that one caller holds open or being opened, so that no caller fills the tables: the
	// caller the front hop's ext_proc names in contract.HeaderMuxCaller (a verified token's issuer
	// and subject, or the client's source address), trusted on a request with the secret; requests
	// without it are one caller. Beyond it an initialize, an HTTP+SSE client's stream, a GET or a
	// subscriptions/listen is answered 429 with Retry-After (CallerLimitRetryAfter) and a
	// JSON-RPC error naming the limit. 0 means
	// DefaultMaxSSESessionsPerCaller.
	MaxSSESessionsPerCaller int
	// Secret is the value of contract.HeaderMuxAuth that the front hop's ext_proc, in the same
	// process, sets on the requests it passes (extproc.Config.MuxSecret): the mux refuses (403)
	// any request without it, so that only what the front hop authorized reaches the targets.
	// Required: an empty Secret refuses every request.
	Secret string
	// Registerer, when set, gets the mux's metric: mcpgate_mux_sessions{kind}, the sessions the
	// mux holds open in this process (kind sse_target: the SSE bridge's sessions of SSE targets;
	// sse_client: the sessions of HTTP+SSE clients), each a stream and a goroutine.
	Registerer prometheus.Registerer
}

// New returns the mux: its HTTP handler, and the resolver of the front hop's ext_proc in the
// same process (Resolve).
func New(opts Options) *Server {
	orDefault(&opts.MaxBodyBytes, DefaultMaxBodyBytes)
	orDefault(&opts.MaxPages, DefaultMaxPages)
	orDefault(&opts.ResolveTimeout, DefaultResolveTimeout)
	orDefault(&opts.StreamOpenTimeout, DefaultStreamOpenTimeout)
	orDefault(&opts.TargetTimeout, DefaultTargetTimeout)
	orDefault(&opts.ResumeDelay, DefaultResumeDelay)
	orDefault(&opts.SSEIdleTimeout, DefaultSSEIdleTimeout)
	orDefault(&opts.MaxSSESessions, DefaultMaxSSESessions)
	orDefault(&opts.MaxSSESessionsPerCaller, DefaultMaxSSESessionsPerCaller)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Server{opts: opts, log: log, clients: map[string]*upstream{}, maxClients: maxUpstreams, secret: []byte(opts.Secret),
		readBuffers: sync.Pool{New: func() any { return new([readBufferSize]byte) }}, resolveID: newResolveIDPrefix()}
	if opts.ResolveCacheTTL > 0 {
		h.cache = newResolveCache(opts.ResolveCacheTTL)
	}
	h.bridge = newSSEBridge(h)
	h.legacy = newLegacyClients(h)
	h.streams = newSessionTable[*heldStream](opts.MaxSSESessions, opts.MaxSSESessionsPerCaller,
		"streams", "server-to-client streams (GET, subscriptions/listen)", "mux Options.MaxSSESessions, --mux-max-sse-sessions",
		"mux Options.MaxSSESessionsPerCaller, --mux-max-sse-sessions-per-caller")
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(sessionsCollector{h})
	}
	return h
}

// sessionsDesc describes mcpgate_mux_sessions (Options.Registerer).
var sessionsDesc = prometheus.NewDesc("mcpgate_mux_sessions",
	"Sessions and streams the mux holds open in this process: kind sse_target, sessions of SSE targets (the bridge's); sse_client, sessions of HTTP+SSE clients; stream, merged server-to-client streams (GET, subscriptions/listen).",
	[]string{"kind"}, nil)

// sessionsCollector collects mcpgate_mux_sessions of h: its session tables' sizes at each scrape.
type sessionsCollector struct{ h *Server }

func (c sessionsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- sessionsDesc }

func (c sessionsCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(c.h.bridge.table.len()), "sse_target")
	ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(c.h.legacy.table.len()), "sse_client")
	ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(c.h.streams.len()), "stream")
}

// CloseIdleConnections closes the mux's idle connections to the Envoy upstream listeners (a
// draining Envoy counts them among its connections until they close).
func (h *Server) CloseIdleConnections() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, up := range h.clients {
		up.client.CloseIdleConnections()
	}
}

// Close closes the sessions of SSE targets (their GET streams; their requests in flight fail)
// and those of HTTP+SSE clients (their streams end, their mux sessions are deleted), ends the
// merged server-to-client streams, and refuses new ones. Streamable HTTP targets' sessions are
// the targets' own and stay.
func (h *Server) Close() {
	h.bridge.close()
	h.legacy.close()
	for _, s := range h.streams.close() {
		s.cancel()
	}
}

// newResolveIDPrefix returns the start of the ids of Resolve's list requests: "mcpgate-resolve:",
// 16 random hex digits, ":". Those requests go in the client's session: ids a client cannot guess
// cannot be the ids of its own requests.
func newResolveIDPrefix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	return "mcpgate-resolve:" + hex.EncodeToString(b) + ":"
}

// readBufferSize is the size of the buffer an event stream is read with.
const readBufferSize = 32 << 10

// Server is the mux. Its state is the HTTP client of each upstream address (at most
// maxClients), the buffers event streams are read with, reused, Resolve's cache and the SSE
// bridge's sessions.
type Server struct {
	opts        Options
	log         *slog.Logger
	mu          sync.Mutex
	clients     map[string]*upstream
	maxClients  int
	readBuffers sync.Pool
	// secret is Options.Secret; refused holds the reasons of the refusals logged (authorized).
	secret  []byte
	refused sync.Map
	// resolveID starts the ids of Resolve's list requests (newResolveIDPrefix).
	resolveID string
	// cache keeps Resolve's resolutions (Options.ResolveCacheTTL); nil: none.
	cache *resolveCache
	// bridge serves the SSE targets.
	bridge *sseBridge
	// legacy serves the HTTP+SSE clients.
	legacy *legacyClients
	// older remembers the backends a target of which does not offer ModernVersion (discover).
	older olderMemo
	// streams holds the merged server-to-client streams open (holdStream).
	streams *sessionTable[*heldStream]
}

// ServeHTTP serves one request of a client.
func (h *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(w, r) {
		return
	}
	// The caller the front hop names (trusted: the request carries its secret) counts the
	// sessions the request opens; no target gets the header.
	r = r.WithContext(withCaller(r.Context(), headerCaller(r.Header.Values(contract.HeaderMuxCaller))))
	r.Header.Del(contract.HeaderMuxCaller)
	m, err := readMux(r.Header.Values(contract.HeaderMux))
	if err != nil {
		h.log.Warn("mux: request without a valid backend description", "header", contract.HeaderMux, "path", r.URL.Path, "error", err)
		http.Error(w, "mcpgate mux: "+contract.HeaderMux+": "+err.Error(), http.StatusBadRequest)
		return
	}
	if h.opts.Upstream == nil {
		http.Error(w, "mcpgate mux: no upstream configured", http.StatusInternalServerError)
		return
	}
	up, err := h.upstream(h.opts.Upstream(m.Gateway))
	if err != nil {
		h.log.Error("mux: upstream address", "gateway", m.Gateway, "error", err)
		http.Error(w, "mcpgate mux: gateway "+m.Gateway+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	c := &call{h: h, m: m, up: up, w: w, r: r, ctx: r.Context(), log: h.log.With("backend", m.Backend)}
	switch r.Method {
	case http.MethodPost:
		switch key, n := legacyKey(r); {
		case n == 1:
			h.legacy.post(c, key)
		case n > 1:
			http.Error(w, "mcpgate mux: more than one legacy session query parameter", http.StatusBadRequest)
		default:
			c.post()
		}
	case http.MethodGet:
		if len(r.Header.Values("Mcp-Session-Id")) == 0 {
			// An HTTP+SSE (2024-11-05) client opens its stream with a GET and no session.
			h.legacy.open(c)
			return
		}
		c.get()
	case http.MethodDelete:
		c.delete()
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "mcpgate mux: method not allowed", http.StatusMethodNotAllowed)
	}
}

// authorized reports whether r carries the front hop's secret (contract.HeaderMuxAuth), once. When
// it does not, it answers 403 and logs the reason at Warn, once per reason (the mux's address may
// be reachable by others than Envoy: a flood of forged requests must not flood the log); the
// value sent is never logged or echoed.
func (h *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	v := r.Header.Values(contract.HeaderMuxAuth)
	var reason string
	switch {
	case len(h.secret) == 0:
		reason = "the mux has no secret configured (mux.Options.Secret)"
	case len(v) == 0:
		reason = "no " + contract.HeaderMuxAuth + " header: the request did not pass the front hop's ext_proc (a route without it, or a client reaching the mux directly)"
	case len(v) > 1:
		reason = contract.HeaderMuxAuth + " sent more than once"
	case subtle.ConstantTimeCompare([]byte(v[0]), h.secret) != 1:
		reason = "wrong " + contract.HeaderMuxAuth + ": not the secret of this process's ext_proc (a forged request, or a front hop served by another process)"
	default:
		return true
	}
	if _, logged := h.refused.LoadOrStore(reason, true); !logged {
		h.log.Warn("mux: request refused (logged once per reason)", "reason", reason, "path", r.URL.Path, "remote", r.RemoteAddr)
	}
	http.Error(w, "mcpgate mux: forbidden: the request did not come through the gateway's front hop", http.StatusForbidden)
	return false
}

// orDefault sets *v, an Options field, to d when it is not positive (left unset).
func orDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Options returns the options the server runs with: New's, their defaults filled in.
func (h *Server) Options() Options { return h.opts }

// readMux reads and checks the backend description of the contract.HeaderMux values.
func readMux(values []string) (*contract.Mux, error) {
	if len(values) != 1 {
		return nil, fmt.Errorf("want one value, got %d", len(values))
	}
	var m contract.Mux
	if err := json.Unmarshal([]byte(values[0]), &m); err != nil {
		return nil, err
	}
	if len(m.Targets) == 0 {
		return nil, errors.New("targets: empty")
	}
	if m.Bridge && len(m.Targets) != 1 {
		return nil, fmt.Errorf("bridge: want one target, got %d", len(m.Targets))
	}
	switch m.FailureMode {
	case "", contract.FailClosed, contract.FailOpen:
	default:
		return nil, fmt.Errorf("failureMode %q: want %s or %s", m.FailureMode, contract.FailClosed, contract.FailOpen)
	}
	seen := make(map[string]bool, len(m.Targets))
	for i, t := range m.Targets {
		if err := t.Check(); err != nil {
			return nil, fmt.Errorf("targets[%d].%w", i, err)
		}
		switch t.Protocol {
		case "", contract.TransportStreamableHTTP, contract.TransportSSE:
		default:
			return nil, fmt.Errorf("targets[%d].protocol %q: want %s or none (Streamable HTTP)", i, t.Protocol, contract.TransportSSE)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("targets[%d].name %q: repeated", i, t.Name)
		}
		seen[t.Name] = true
	}
	return &m, nil
}

// call is one client request being served.
type call struct {
	h   *Server
	m   *contract.Mux
	up  *upstream
	w   http.ResponseWriter
	r   *http.Request
	ctx context.Context
	log *slog.Logger
	// sess is the session the request names: the targets it holds, in the backend's order, with
	// their own session ids.
	sess []member
	// namesOnly: listTarget keeps the items' names only, not the items (Resolve).
	namesOnly bool
	// modernEra: a sessionless request of MCP 2026-07-28 (serveModern), whose results the mux
	// makes say "resultType":"complete".
	modernEra bool
}

// member is a target of a session and the target's own session id ("": it gave none).
type member struct {
	t   contract.MuxTarget
	sid string
}

// failOpen reports whether a target that fails is left out rather than failing the request.
func (c *call) failOpen() bool { return c.m.FailureMode == contract.FailOpen }

// bare reports whether the items it are named without their target's prefix: tools and prompts
// under prefixMode Never (resource URIs are TARGET+uri in every mode).
func (c *call) bare(it mcp.Item) bool {
	return c.m.PrefixMode == contract.PrefixModeNever && (it == mcp.Tool || it == mcp.Prompt)
}

// targetNames returns the backend's target names joined by commas, as mcp.SplitTarget takes them.
func (c *call) targetNames() string {
	names := make([]string, len(c.m.Targets))
	for i, t := range c.m.Targets {
		names[i] = t.Name
	}
	return strings.Join(names, ",")
}

// member returns the session's member of the target name.
func (c *call) member(name string) (member, bool) {
	for _, mb := range c.sess {
		if mb.t.Name == name {
			return mb, true
		}
	}
	return member{}, false
}

// session is the client's session id, before base64url: the backend it was opened on and each
// target's own session id ("": the target gave none).
type session struct {
	Backend string            `json:"backend"`
	Targets map[string]string `json:"targets"`
}

// encodeSession returns the client's session id of the members on backend: base64url (unpadded)
// of the JSON session.
func encodeSession(backend string, members []member) string {
	s := session{Backend: backend, Targets: make(map[string]string, len(members))}
	for _, mb := range members {
		s.Targets[mb.t.Name] = mb.sid
	}
	b, _ := json.Marshal(s)
	return base64.RawURLEncoding.EncodeToString(b)
}

// errNoSession is openSession's error for a request without a session id.
var errNoSession = errors.New("mcpgate mux: Mcp-Session-Id is required after initialize")

// readSession reads the session of the request's Mcp-Session-Id. ok is false, after the answer was
// written, when there is none or it is not one the mux gave for this backend.
func (c *call) readSession(id json.RawMessage) bool {
	switch err := c.openSession(c.r.Header.Values("Mcp-Session-Id")); {
	case errors.Is(err, errNoSession):
		c.writeError(http.StatusBadRequest, id, mcp.CodeInvalidRequest, err.Error())
		return false
	case err != nil:
		c.log.Info("mux: request of an unknown session", "error", err)
		c.writeError(http.StatusNotFound, id, mcp.CodeSessionNotFound, "Session not found")
		return false
	}
	return true
}

// openSession sets c.sess to the session of the Mcp-Session-Id values v: errNoSession when there
// is none, another error when it is not one the mux gave for this backend.
func (c *call) openSession(v []string) error {
	if len(v) == 0 {
		return errNoSession
	}
	s, err := decodeSession(v)
	if err == nil && s.Backend != c.m.Backend {
		// Another backend's targets may share names with this one's: their ids are not theirs.
		err = fmt.Errorf("it was opened on backend %q, not %s", s.Backend, c.m.Backend)
	}
	if err == nil {
		for _, t := range c.m.Targets {
			if sid, found := s.Targets[t.Name]; found {
				c.sess = append(c.sess, member{t: t, sid: sid})
				delete(s.Targets, t.Name)
			}
		}
		for name := range s.Targets {
			err = fmt.Errorf("it names the target %q, which backend %s does not have", name, c.m.Backend)
			break
		}
	}
	if err == nil && len(c.sess) == 0 {
		err = errors.New("it names no target")
	}
	return err
}

// decodeSession decodes a session id encodeSession made.
func decodeSession(v []string) (*session, error) {
	if len(v) != 1 {
		return nil, errors.New("Mcp-Session-Id sent more than once")
	}
	b, err := base64.RawURLEncoding.DecodeString(v[0])
	if err != nil {
		return nil, err
	}
	var s session
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// message is one JSON-RPC message.
type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   json.RawMessage `json:"error,omitempty"`
}

// isRequest, isNotification and isResponse say what m is.
func (m *message) isRequest() bool      { return m.Method != "" && m.ID != nil }
func (m *message) isNotification() bool { return m.Method != "" && m.ID == nil }
func (m *message) isResponse() bool {
	return m.Method == "" && m.ID != nil && (m.Result != nil || m.Error != nil)
}

func (m *message) encode() []byte {
	m.JSONRPC = "2.0"
	b, _ := json.Marshal(m)
	return b
}

// post serves a POST: one JSON-RPC message.
func (c *call) post() {
	if msg, ok := c.readMessage(); ok {
		c.serve(msg)
	}
}

// readMessage reads the request's body, one JSON-RPC message; ok is false, after the answer was
// written (413, 400), when it is not one.
func (c *call) readMessage() (_ *message, ok bool) {
	limit := c.h.opts.MaxBodyBytes
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, int64(limit)))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			c.writeError(http.StatusRequestEntityTooLarge, nil, mcp.CodeInvalidRequest, fmt.Sprintf("mcpgate mux: request body larger than %d bytes", limit))
			return nil, false
		}
		c.log.Info("mux: reading the request body", "error", err)
		return nil, false
	}
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		c.writeError(http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
			"mcpgate mux: JSON-RPC batches are not supported on a multiplexed backend (MCP 2025-06-18 removed them); send one message per request")
		return nil, false
	}
	var msg message
	if err := json.Unmarshal(body, &msg); err != nil {
		c.writeError(http.StatusBadRequest, nil, mcp.CodeParseError, "mcpgate mux: the body is not a JSON-RPC message: "+err.Error())
		return nil, false
	}
	return &msg, true
}

// serve serves the message msg of a POST.
func (c *call) serve(msg *message) {
	switch {
	case msg.isRequest() && msg.Method == "initialize":
		c.initialize(msg)
	case msg.isRequest() && msg.Method == "server/discover" && c.sessionless() && c.discover(msg):
		// Every target offers MCP 2026-07-28: the mux does too (a backend that does not is
		// answered below, as any request without a session, on which clients fall back).
	case msg.isRequest() && msg.Method == "ping":
		// Answered here: the client's connection to the gateway is what it tests.
		c.writeJSON(http.StatusOK, []byte(`{"jsonrpc":"2.0","id":`+string(msg.ID)+`,"result":{}}`))
	case msg.Method != "server/discover" && c.modern(msg):
		c.serveModern(msg)
	case msg.isRequest():
		if c.readSession(msg.ID) {
			c.request(msg)
		}
	case msg.isNotification():
		if c.readSession(nil) {
			c.notify(msg)
		}
	case msg.isResponse():
		if c.readSession(nil) {
			c.respond(msg)
		}
	default:
		c.writeError(http.StatusBadRequest, msg.ID, mcp.CodeInvalidRequest, "mcpgate mux: not a JSON-RPC request, notification or response")
	}
}

// request serves a request of an open session. Under Bridge every request passes to the one
// target as it is.
func (c *call) request(msg *message) {
	if c.m.Bridge {
		c.forward(msg, c.sess[0], "")
		return
	}
	switch msg.Method {
	case "tools/list":
		c.list(msg, mcp.Tool, "tools", "name")
	case "prompts/list":
		c.list(msg, mcp.Prompt, "prompts", "name")
	case "resources/list":
		c.list(msg, mcp.Resource, "resources", "uri")
	case "resources/templates/list":
		c.list(msg, mcp.Resource, "resourceTemplates", "uriTemplate")
	case "logging/setLevel":
		c.setLevel(msg)
	case "tools/call", "prompts/get", "resources/read", "resources/subscribe", "resources/unsubscribe", mcp.MethodComplete:
		c.route(msg)
	default:
		c.writeError(http.StatusOK, msg.ID, -32601, "mcpgate mux: method "+msg.Method+" is not supported on a multiplexed backend")
	}
}

// delete ends the session at every target that gave a session id.
func (c *call) delete() {
	if !c.readSession(nil) {
		return
	}
	c.fanOut(c.targetBound(), func(ctx context.Context, mb member) error {
		if mb.sid == "" {
			return nil
		}
		resp, err := c.do(ctx, mb, c.newRequest(ctx, http.MethodDelete, mb, nil), false)
		if err != nil {
			return err
		}
		drain(resp)
		return nil
	})
	c.w.WriteHeader(http.StatusNoContent)
}

// notify sends a client's notification to every target of the session. One whose method is a
// request's (a tools/call without an id) goes to one target at most (notifyOne).
func (c *call) notify(msg *message) {
	if !strings.HasPrefix(msg.Method, "notifications/") {
		c.notifyOne(msg)
		return
	}
	body := msg.encode()
	c.fanOut(c.targetBound(), func(ctx context.Context, mb member) error {
		resp, err := c.do(ctx, mb, c.newRequest(ctx, http.MethodPost, mb, body), false)
		if err != nil {
			return err
		}
		defer drain(resp)
		if resp.StatusCode/100 != 2 {
			return httpError(resp)
		}
		return nil
	})
	c.w.WriteHeader(http.StatusAccepted)
}

// notifyOne serves a notification whose method is a request's, such as a tools/call without an
// id, as the front hop's route to a single MCP server does (it passes the message, which the
// rules judged as that item's call, and the server decides: the go-sdk's answers 400): one that
// names an item goes to the target the item's prefix names (itemTarget, as its call would, with
// the target's own name; under Bridge every message goes to the one target), and the answer is
// that target's status (202 when it took it). The front hop judged it as a call of that target's
// item, so it never reaches another. One that names no item (tools/list, initialize...) would
// reach every target, and one whose item is no target's reaches none: those are answered 400
// with a JSON-RPC error without an id (Streamable HTTP's answer to input a server cannot
// accept), which the front hop's audit records, never as a notification passed on.
func (c *call) notifyOne(msg *message) {
	var mb member
	name := ""
	switch {
	case c.m.Bridge:
		mb = c.sess[0]
	case mcp.ItemOf(msg.Method) == mcp.NoItem && msg.Method != mcp.MethodComplete:
		c.writeError(http.StatusBadRequest, nil, mcp.CodeInvalidRequest, "mcpgate mux: "+msg.Method+
			" is a request's method: without an id (a notification) it goes to no target of a multiplexed backend, which would pass it to every target")
		return
	default:
		var r *refusal
		if mb, name, r = c.itemTarget(msg); r != nil {
			c.writeError(http.StatusBadRequest, nil, r.code, r.text)
			return
		}
	}
	req := c.newRequest(c.ctx, http.MethodPost, mb, msg.encode())
	if req != nil && name != "" && req.Header.Get(mcp.NameHeader) != "" {
		req.Header.Set(mcp.NameHeader, mcp.EncodeHeaderValue(name))
	}
	resp, err := c.do(c.ctx, mb, req, false)
	if err == nil && resp.StatusCode/100 != 2 {
		err = httpError(resp)
		drain(resp)
	}
	if err != nil {
		c.log.Info("mux: target refused a client's notification", "target", mb.t.Name, "method", msg.Method, "error", err)
		var se *statusError
		switch {
		case sessionGone(err, mb):
			c.writeError(http.StatusNotFound, nil, mcp.CodeSessionNotFound, "Session not found")
		case c.passRefusal(err):
		case errors.As(err, &se) && se.status/100 == 4:
			c.writeError(se.status, nil, mcp.CodeInvalidRequest, "mcpgate mux: "+(&targetError{mb.t.Name, err}).Error())
		default:
			c.writeError(http.StatusBadGateway, nil, mcp.CodeInternalError, "mcpgate mux: "+(&targetError{mb.t.Name, err}).Error())
		}
		return
	}
	drain(resp)
	c.w.WriteHeader(resp.StatusCode)
}

// respond sends a client's answer to a target's request (ServerRequestIDPrefix) to that target,
// with the target's id.
func (c *call) respond(msg *message) {
	name, id, ok := serverRequestID(msg.ID)
	mb, found := c.member(name)
	if !ok || !found {
		c.writeError(http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
			"mcpgate mux: the response's id is not the id of a request of a target of this session")
		return
	}
	msg.ID = id
	resp, err := c.do(c.ctx, mb, c.newRequest(c.ctx, http.MethodPost, mb, msg.encode()), false)
	if err != nil {
		c.log.Warn("mux: target refused a response", "target", mb.t.Name, "error", err)
		c.writeError(http.StatusBadGateway, nil, mcp.CodeInternalError, "mcpgate mux: target "+mb.t.Name+": "+err.Error())
		return
	}
	defer drain(resp)
	c.w.WriteHeader(resp.StatusCode)
}

// serverRequestID reads an id ServerRequestIDPrefix starts: the target and the target's id.
func serverRequestID(raw json.RawMessage) (target string, id json.RawMessage, ok bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil || !strings.HasPrefix(s, ServerRequestIDPrefix) {
		return "", nil, false
	}
	target, rest, found := strings.Cut(s[len(ServerRequestIDPrefix):], ":")
	if !found || mcp.IDKey(json.RawMessage(rest)) == "" {
		return "", nil, false
	}
	return target, json.RawMessage(rest), true
}

// toClientID returns the id under which the client sees the target's request id.
func toClientID(target string, id json.RawMessage) json.RawMessage {
	b, _ := json.Marshal(ServerRequestIDPrefix + target + ":" + string(id))
	return b
}

// bound is how long fanOut waits for each target, and what sets it (for the error); the zero
// bound waits as long as the request lasts.
type bound struct {
	within time.Duration
	what   string
}

// targetBound is the bound of what the mux sends to every target of a session.
func (c *call) targetBound() bound {
	return bound{c.h.opts.TargetTimeout, "the target timeout, mux Options.TargetTimeout"}
}

// fanOut runs fn for every member of the session in parallel and returns each one's error, in
// the session's order. Errors are logged with their target. fn's context ends with c.ctx and,
// under a bound, b.within after fn starts (the target then failed, with errNoAnswer) and when
// fn returns, so fn must be done with what it opened by then: a GET, which reads its targets'
// streams after the fan-out, has none.
func (c *call) fanOut(b bound, fn func(ctx context.Context, mb member) error) []error {
	errs := make([]error, len(c.sess))
	var wg sync.WaitGroup
	for i, mb := range c.sess {
		wg.Go(func() {
			ctx := c.ctx
			if b.within > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, b.within)
				defer cancel()
			}
			if errs[i] = fn(ctx, mb); errs[i] != nil {
				if ctx.Err() == context.DeadlineExceeded && c.ctx.Err() == nil {
					errs[i] = &targetError{mb.t.Name, fmt.Errorf("%w within %s (%s)", errNoAnswer, b.within, b.what)}
				}
				c.log.Warn("mux: target failed", "target", mb.t.Name, "method", c.r.Method, "error", errs[i])
			}
		})
	}
	wg.Wait()
	return errs
}

// errNoAnswer is the failure of a target that did not answer in time (fanOut).
var errNoAnswer = errors.New("no answer")

// writeJSON writes a JSON answer.
func (c *call) writeJSON(status int, body []byte) {
	c.w.Header().Set("Content-Type", "application/json")
	c.w.WriteHeader(status)
	_, _ = c.w.Write(body)
}

// passRefusal writes, under Bridge, the one target's refusal err (a 4xx: a 401 and its
// challenge, a 403 of its DNS rebinding protection) as the target gave it, as its client would get
// it directly (the mux passes everything through): its status, Content-Type, WWW-Authenticate and
// the start of its body. It reports whether it did; a multiplexed backend answers a target's
// failure with its own error naming the target.
func (c *call) passRefusal(err error) bool {
	var e *statusError
	if !c.m.Bridge || !errors.As(err, &e) || e.status/100 != 4 {
		return false
	}
	for k, v := range map[string]string{"Content-Type": e.contentType, "WWW-Authenticate": e.authenticate} {
		if v != "" {
			c.w.Header().Set(k, v)
		}
	}
	c.w.WriteHeader(e.status)
	_, _ = io.WriteString(c.w, e.body)
	return true
}

// writeError writes a JSON-RPC error answer.
func (c *call) writeError(status int, id json.RawMessage, code int, text string) {
	c.writeJSON(status, mcp.ErrorResponse(id, code, text))
}
