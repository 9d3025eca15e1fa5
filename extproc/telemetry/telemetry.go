// Package telemetry records what ext_proc sees of MCP traffic: one JSON audit line per MCP
// request/response pair, Prometheus metrics, and an OpenTelemetry span per MCP request that
// continues the trace of the HTTP request. It never records tokens.
package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// Outcomes of an MCP exchange, the outcome label and audit field.
const (
	// OutcomeResult: the server answered with a result (for tools/call: one that does not report
	// a failure).
	OutcomeResult = "result"
	// OutcomeToolError: the server answered a tools/call with a result whose isError is true: the
	// call reached the tool and the tool failed (MCP reports that in the result, not as a
	// JSON-RPC error). OpenTelemetry's MCP conventions name it the same (error.type); the span
	// gets that attribute and the error status.
	OutcomeToolError = "tool_error"
	// OutcomeError: the answer was a JSON-RPC error (from the server or, for a refused call, from
	// the gateway), or a notification's POST was answered with an HTTP error (4xx, 5xx): it was
	// not taken.
	OutcomeError = "error"
	// OutcomeNotification: a notification, which gets no answer (its POST was accepted, or its
	// answer is not known).
	OutcomeNotification = "notification"
	// OutcomeNoAnswer: the exchange ended (stream closed, entry expired) without an answer.
	OutcomeNoAnswer = "no_answer"
	// OutcomeRefused: the gateway refused the HTTP request (authentication, traffic rule, limit).
	OutcomeRefused = "refused"
)

// Decisions, the decision label and audit field.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// durationBuckets are the bounds of mcpgate_mcp_request_duration_seconds: from the millisecond of
// a call the gateway answers itself to the minutes a tool can run (MCP routes have no route
// timeout), up to OpenTelemetry's bound for MCP operations (mcp.server.operation.duration's
// largest, 300 s), so that a call of several minutes falls in a bucket rather than only in +Inf.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// DefaultMaxArgumentBytes is how much of a tool call's arguments the audit line keeps.
const DefaultMaxArgumentBytes = 1024

// Options configure Telemetry.
type Options struct {
	// Audit receives one JSON line per MCP exchange; nil writes none. Lines that concurrent
	// exchanges finish together go in one Write; every line is written before the Finish that
	// made it returns or, when a Write is in progress, by the Finish making that Write before it
	// returns (see auditLog). Audit must accept its lines in order, from one goroutine at a time.
	Audit io.Writer
	// Registerer registers the metrics; nil keeps them in a private registry.
	Registerer prometheus.Registerer
	// TracerProvider makes the spans; nil makes none.
	TracerProvider trace.TracerProvider
	// RedactKeys name the argument keys (any depth) whose values the audit line and metadata
	// replace with "[REDACTED]": a key is redacted when, both lower-cased and without '_', '-'
	// and '.', it ends with one of them ("token" redacts "github_token" and "accessToken", not
	// "max_tokens"); so are such keys' values in a string's URL query, and a URL's user:password
	// (redact.go).
	RedactKeys []string
	// MaxArgumentBytes truncates the arguments kept (default DefaultMaxArgumentBytes).
	MaxArgumentBytes int
	// Logger reports audit write errors.
	Logger *slog.Logger
}

// Record is one MCP exchange (a request and its answer, or a refused HTTP request).
type Record struct {
	// Time is when the request was seen.
	Time time.Time
	// Gateway, Route, Backend and Target come from the route's ext_proc metadata.
	Gateway, Route, Backend, Target string
	// Session is the Mcp-Session-Id or the legacy SSE sessionId.
	Session string
	// Subject is the JWT sub.
	Subject string
	// Claims are the token's claims (nil: none); the audit line writes those of ClaimNames.
	Claims map[string]any
	// ClaimNames are the claims the policy's rules reference, sorted: those of Claims the audit
	// line writes (nil: every claim of Claims).
	ClaimNames []string
	// Authn is the authentication result ("ok", "missing", "invalid: REASON", or "none" when the
	// route's policy has no JWT authentication).
	Authn string
	// Method and Tool of the JSON-RPC request (Tool for tools/call).
	Method, Tool string
	// Prompt is the prompt of a prompts/get; Resource the URI of a resources/read,
	// resources/subscribe or resources/unsubscribe.
	Prompt, Resource string
	// Arguments are the raw JSON arguments of tools/call, unredacted; Detach renders them and
	// sets them to nil.
	Arguments json.RawMessage
	// ID is the request's raw JSON-RPC id, nil when it has none (a notification).
	ID json.RawMessage
	// Decision and Rule: the authorization outcome and the source of the deciding rule.
	Decision, Rule string
	// ErrorCode is the JSON-RPC error code of the answer when HasError.
	ErrorCode int
	// HasError is set when the answer is a JSON-RPC error, the server's or one the gateway
	// answered with.
	HasError bool
	// HTTPStatus of the response carrying the answer (or refusing the request).
	HTTPStatus int
	// Outcome is one of the Outcome constants.
	Outcome string
	// Latency is the time from Time to the answer (or refusal); Finish sets it.
	Latency time.Duration

	span trace.Span
	// args is Arguments rendered (see Telemetry.Arguments) once argsDone.
	args                    []byte
	argsTruncated, argsDone bool
}

// Telemetry writes audit lines, counts and traces. It is safe for concurrent use.
type Telemetry struct {
	audit  *auditLog
	bufs   sync.Pool
	log    *slog.Logger
	tracer trace.Tracer
	// redact are the redaction keys, folded (foldKey); nil redacts nothing.
	redact  [][]byte
	maxArgs int
	// redactKeys are the keys of redact that end with none of the others, for
	// mayNameRedactedKey: a key that ends with "accesstoken" ends with "token".
	redactKeys []precheckKey
	methods    *labelGuard
	tools      *labelGuard
	// series caches the metric children of each label set of requests (seriesKey to *series):
	// WithLabelValues hashes and checks every label value on every call.
	series      sync.Map
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	authn       *prometheus.CounterVec
	streams     prometheus.Gauge
	nonRPC      *prometheus.CounterVec
	policies    *prometheus.CounterVec
	policyWaits *prometheus.CounterVec
}

// endsWithAnother reports whether k ends with another of keys: an argument key that ends with k
// ends with that one too.
func endsWithAnother(k string, keys map[string]bool) bool {
	for other := range keys {
		if other != k && strings.HasSuffix(k, other) {
			return true
		}
	}
	return false
}

// New returns Telemetry; it fails when the metrics cannot be registered.
func New(o Options) (*Telemetry, error) {
	t := &Telemetry{
		log:     o.Logger,
		maxArgs: o.MaxArgumentBytes,
		// the methods MCP defines that a client sends are values from the start
		methods: newLabelGuard(200, "initialize", "ping", "tools/list", mcp.MethodToolsCall, "resources/list",
			"resources/templates/list", "resources/read", "resources/subscribe", "resources/unsubscribe",
			"prompts/list", "prompts/get", "completion/complete", "logging/setLevel", "notifications/initialized",
			"notifications/cancelled", "notifications/progress", "notifications/roots/list_changed"),
		tools: newLabelGuard(1000),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if o.Audit != nil {
		t.audit = newAuditLog(o.Audit, t.log)
	}
	if t.maxArgs <= 0 {
		t.maxArgs = DefaultMaxArgumentBytes
	}
	if len(o.RedactKeys) > 0 {
		keys := make(map[string]bool, len(o.RedactKeys))
		for _, k := range o.RedactKeys {
			if f := foldKey(k); f != "" {
				keys[f] = true
			}
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			t.redact = append(t.redact, []byte(k))
			if !endsWithAnother(k, keys) {
				t.redactKeys = append(t.redactKeys, newPrecheckKey(k))
			}
		}
	}
	if o.TracerProvider != nil {
		t.tracer = o.TracerProvider.Tracer("github.com/mcpgate/mcpgate/extproc")
	}
	t.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }

	t.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpgate_mcp_requests_total",
		Help: "MCP JSON-RPC requests and notifications seen by ext_proc, by authorization decision and outcome.",
	}, []string{"gateway", "route", "target", "method", "tool", "decision", "outcome"})
	t.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mcpgate_mcp_request_duration_seconds",
		Help:    "Time from an MCP request reaching ext_proc to its answer.",
		Buckets: durationBuckets,
	}, []string{"gateway", "route", "target", "method"})
	t.authn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpgate_authn_failures_total",
		Help: "Requests whose JWT was missing or invalid, by reason (whether or not the mode refused them).",
	}, []string{"reason"})
	t.streams = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mcpgate_extproc_streams_active",
		Help: "ext_proc gRPC streams (one per HTTP request) in progress.",
	})
	t.nonRPC = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpgate_extproc_non_jsonrpc_bodies_total",
		Help: "Bodies on MCP routes that were not JSON-RPC and passed untouched, by direction.",
	}, []string{"direction"})
	t.policies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpgate_extproc_policy_updates_total",
		Help: "Policy updates received from the control plane, by result (ack or nack).",
	}, []string{"result"})
	t.policyWaits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpgate_extproc_policy_waits_total",
		Help: "Requests that waited for the policy their route names, by result (received, timeout: refused with 500, cancelled: the request ended first).",
	}, []string{"result"})
	// the counters of few, known labels are there at 0 before their first event, so that a
	// dashboard shows 0 rather than no data
	for _, r := range []string{PolicyReceived, PolicyTimeout, PolicyCancelled} {
		t.policyWaits.WithLabelValues(r)
	}
	for _, r := range []string{"ack", "nack"} {
		t.policies.WithLabelValues(r)
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	for _, c := range []prometheus.Collector{t.requests, t.duration, t.authn, t.streams, t.nonRPC, t.policies, t.policyWaits} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register ext_proc metrics: %w", err)
		}
	}
	return t, nil
}

// StreamStarted and StreamEnded track mcpgate_extproc_streams_active.
func (t *Telemetry) StreamStarted() { t.streams.Inc() }

// StreamEnded is the counterpart of StreamStarted.
func (t *Telemetry) StreamEnded() { t.streams.Dec() }

// AuthnFailure counts a missing or invalid token. reason must come from a fixed set (the jwt
// package's reasons).
func (t *Telemetry) AuthnFailure(reason string) { t.authn.WithLabelValues(reason).Inc() }

// NonJSONRPC counts a body on an MCP route that was not JSON-RPC; direction is "request" or
// "response".
func (t *Telemetry) NonJSONRPC(direction string) { t.nonRPC.WithLabelValues(direction).Inc() }

// PolicyUpdate counts a policy update from the control plane.
func (t *Telemetry) PolicyUpdate(accepted bool) {
	if accepted {
		t.policies.WithLabelValues("ack").Inc()
	} else {
		t.policies.WithLabelValues("nack").Inc()
	}
}

// Results of PolicyWait.
const (
	PolicyReceived  = "received"
	PolicyTimeout   = "timeout"
	PolicyCancelled = "cancelled"
)

// PolicyWait counts a request that waited for the policy its route names; result is one of
// PolicyReceived, PolicyTimeout, PolicyCancelled.
func (t *Telemetry) PolicyWait(result string) { t.policyWaits.WithLabelValues(result).Inc() }

// Tracing reports whether spans are made, so that callers can skip preparing them.
func (t *Telemetry) Tracing() bool { return t.tracer != nil }

// Span attributes of mcpgate's own, in its namespace (OpenTelemetry's naming rules keep the mcp.*
// namespace for its conventions): they carry the audit line's fields of the same names.
const (
	attrGateway  = "mcpgate.gateway"
	attrRoute    = "mcpgate.route"
	attrTarget   = "mcpgate.target"
	attrDecision = "mcpgate.decision"
	attrOutcome  = "mcpgate.outcome"
)

// headerProtocolVersion is the Streamable HTTP header that names the MCP version of a session's
// requests after initialize (the span's mcp.protocol.version), lower case as Envoy sends it.
const headerProtocolVersion = "mcp-protocol-version"

// StartSpan starts the span of r's MCP request as OpenTelemetry's MCP semantic conventions
// describe an MCP server's span: kind SERVER, named "METHOD TOOL" ("METHOD PROMPT", or "METHOD"
// for requests that name no tool or prompt, and, once Finish knows, for a tool or prompt no
// server has shown to exist), as a child of the W3C trace context in headers (a
// fresh trace when there is none). client is the HTTP client's address, "IP:PORT" as Envoy's
// source.address attribute says ("" when unknown). Finish ends it.
func (t *Telemetry) StartSpan(headers propagation.TextMapCarrier, r *Record, client string) {
	if t.tracer == nil {
		return
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), headers)
	method, tool, prompt := ValidUTF8(r.Method), ValidUTF8(r.Tool), ValidUTF8(r.Prompt)
	name := method
	if tool != "" {
		name += " " + tool
	} else if prompt != "" {
		name += " " + prompt
	}
	attrs := make([]attribute.KeyValue, 0, 16)
	attrs = append(attrs, attribute.String("mcp.method.name", method))
	if r.Method == mcp.MethodToolsCall {
		attrs = append(attrs, attribute.String("gen_ai.operation.name", "execute_tool"))
	}
	if tool != "" {
		attrs = append(attrs, attribute.String("gen_ai.tool.name", tool))
	}
	if prompt != "" {
		attrs = append(attrs, attribute.String("gen_ai.prompt.name", prompt))
	}
	if r.Resource != "" {
		attrs = append(attrs, attribute.String("mcp.resource.uri", ValidUTF8(t.resourceURI(r.Resource))))
	}
	if r.Session != "" {
		attrs = append(attrs, attribute.String("mcp.session.id", ValidUTF8(r.Session)))
	}
	if id := requestID(r.ID); id != "" {
		attrs = append(attrs, attribute.String("jsonrpc.request.id", ValidUTF8(id)))
	}
	if v := headers.Get(headerProtocolVersion); v != "" {
		attrs = append(attrs, attribute.String("mcp.protocol.version", ValidUTF8(v)))
	}
	// MCP over HTTP (Envoy's listeners are TCP; mcpgate configures no HTTP/3).
	attrs = append(attrs, attribute.String("network.transport", "tcp"), attribute.String("network.protocol.name", "http"))
	if host, port, err := net.SplitHostPort(client); err == nil && host != "" {
		attrs = append(attrs, attribute.String("client.address", host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, attribute.Int("client.port", p))
		}
	}
	if r.Gateway != "" {
		attrs = append(attrs, attribute.String(attrGateway, r.Gateway))
	}
	if r.Route != "" {
		attrs = append(attrs, attribute.String(attrRoute, r.Route))
	}
	if r.Target != "" {
		attrs = append(attrs, attribute.String(attrTarget, r.Target))
	}
	_, r.span = t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(r.Time), trace.WithAttributes(attrs...))
}

// requestID returns the string representation of a JSON-RPC id that jsonrpc.request.id holds: a
// string id's value, a number as it was sent; "" for a null id or none, which the conventions
// leave out.
func requestID(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	if raw[0] == '"' {
		if n := len(raw); n >= 2 && raw[n-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
			return string(raw[1 : n-1])
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return string(raw)
}

// callerError reports whether a JSON-RPC error code says that the caller sent a request the
// receiver could not serve (parse error, invalid request, method not found, invalid params, which
// an unknown or refused tool gets, resource not found): OpenTelemetry's MCP conventions do not
// count those as errors of a server's span. Any other code is an error.
func callerError(code int) bool {
	switch code {
	case mcp.CodeParseError, mcp.CodeInvalidRequest, codeMethodNotFound, mcp.CodeInvalidParams, codeResourceNotFound:
		return true
	}
	return false
}

// JSON-RPC error codes callerError reads that the gateway never answers with.
const (
	codeMethodNotFound   = -32601
	codeResourceNotFound = -32002 // MCP's Resource not found
)

// resourceURI returns uri as the audit line and the span write it: with a URL's user:password and
// the values of its query's redacted keys replaced, as in tool arguments (none when the
// redaction keys are none).
func (t *Telemetry) resourceURI(uri string) string {
	if t.redact == nil {
		return uri
	}
	if s, ok := t.redactURLCredentials(uri); ok {
		return s
	}
	return uri
}

// ValidUTF8 returns s with each run of invalid UTF-8 bytes as one U+FFFD (s itself, unallocated,
// when it is valid), as the audit line writes them. The method, tool, session and id are the
// client's, and protobuf strings must be UTF-8: one invalid string would cost an OTLP export
// every span in its batch, and the access log's metadata the whole ext_proc reply.
func ValidUTF8(s string) string {
	if utf8.ValidString(s) {
		// The usual case, checked a word at a time where ToValidUTF8 decodes rune by rune.
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// AdmitTool makes name a value of the tool label of the metrics (while the label has room): a
// tool a server listed in a tools/list answer. Other names become values only when a call of
// theirs gets a result (see Finish); until then they count as "other", so that names a client
// makes up (and calls the gateway refuses) cannot fill the label.
func (t *Telemetry) AdmitTool(name string) { t.tools.admit(name) }

// Finish completes r at now: it sets the latency, ends the span, counts the exchange and writes
// the audit line. A method whose request got a result, and a tool whose call got one (not a tool
// error: some servers report an unknown tool so), become values of their labels.
func (t *Telemetry) Finish(r *Record, now time.Time) {
	r.Latency = now.Sub(r.Time)
	if r.Outcome == OutcomeResult || r.Outcome == OutcomeToolError {
		t.methods.admit(r.Method)
	}
	if r.Outcome == OutcomeResult && r.Method == mcp.MethodToolsCall {
		t.tools.admit(r.Tool)
	}
	s := t.seriesOf(seriesKey{r.Gateway, r.Route, r.Target, t.methods.value(r.Method), t.tools.value(r.Tool), r.Decision, r.Outcome})
	s.requests.Inc()
	if s.duration != nil {
		s.duration.Observe(r.Latency.Seconds())
	}
	if r.span != nil {
		// A span name has few values (OpenTelemetry): a method no server answered is "other",
		// as in the metrics' method label, and a tool or prompt no server has shown to exist (a
		// made-up name the gateway refused) leaves it, as it leaves the tool label; both stay in
		// their attributes (mcp.method.name, gen_ai.*.name).
		switch {
		case !t.methods.admitted(r.Method):
			r.span.SetName(t.methods.value(r.Method))
		case (r.Tool != "" && !t.tools.admitted(r.Tool)) || (r.Tool == "" && r.Prompt != "" && r.Outcome != OutcomeResult):
			r.span.SetName(ValidUTF8(r.Method))
		}
		endSpan(r)
		r.span.End(trace.WithTimestamp(now))
		r.span = nil
	}
	if t.audit != nil {
		t.writeAudit(r)
	}
}

// endSpan sets the attributes of r's span that its answer decides, and its status: a
// JSON-RPC error's code as rpc.response.status_code and, when the code is an error of the
// server's (callerError), as error.type with the error status; a tool error's and an unanswered
// request's error.type (tool_error, no_answer) with the error status; mcpgate's decision and
// outcome.
func endSpan(r *Record) {
	switch {
	case r.HasError:
		code := strconv.Itoa(r.ErrorCode)
		r.span.SetAttributes(attribute.String("rpc.response.status_code", code))
		if !callerError(r.ErrorCode) {
			r.span.SetAttributes(attribute.String("error.type", code))
			r.span.SetStatus(codes.Error, "JSON-RPC error "+code)
		}
	case r.Outcome == OutcomeToolError:
		r.span.SetAttributes(attribute.String("error.type", OutcomeToolError))
		r.span.SetStatus(codes.Error, "tool error")
	case r.Outcome == OutcomeNoAnswer:
		r.span.SetAttributes(attribute.String("error.type", OutcomeNoAnswer))
		r.span.SetStatus(codes.Error, "no answer")
	}
	if r.Decision != "" {
		r.span.SetAttributes(attribute.String(attrDecision, r.Decision))
	}
	if r.Outcome != "" {
		r.span.SetAttributes(attribute.String(attrOutcome, r.Outcome))
	}
}

func (t *Telemetry) writeAudit(r *Record) {
	bp := t.bufs.Get().(*[]byte)
	b := appendRecord((*bp)[:0], r, t)
	b = append(b, '\n')
	t.audit.add(b)
	*bp = b
	t.bufs.Put(bp)
}

// seriesKey is the label set of a requests child: gateway, route, target, method, tool,
// decision, outcome.
type seriesKey struct{ gateway, route, target, method, tool, decision, outcome string }

// series are the metric children of one seriesKey.
type series struct {
	requests prometheus.Counter
	// duration is the latency histogram's child of the key's gateway, route, target and method;
	// nil for the outcomes that have no latency (notification, refused), which are not observed.
	duration prometheus.Observer
}

// seriesOf returns the children of k, made on its first use.
func (t *Telemetry) seriesOf(k seriesKey) *series {
	if s, ok := t.series.Load(k); ok {
		return s.(*series)
	}
	s := &series{requests: t.requests.WithLabelValues(k.gateway, k.route, k.target, k.method, k.tool, k.decision, k.outcome)}
	if k.outcome != OutcomeNotification && k.outcome != OutcomeRefused {
		s.duration = t.duration.WithLabelValues(k.gateway, k.route, k.target, k.method)
	}
	actual, _ := t.series.LoadOrStore(k, s)
	return actual.(*series)
}

// labelGuard bounds the distinct values of a metric label whose values come from requests: only
// admitted values (short printable names, the first max of them) are values; others are "other".
// Values are admitted on evidence that they exist (a server's answer), never for being asked
// for, so that a client cannot fill the label with names of its own.
//
// Every request reads the values, and few are ever admitted (at most max): the admitted set is
// copied on each admission and read without a lock.
type labelGuard struct {
	max int
	// mu serializes admissions.
	mu   sync.Mutex
	seen atomic.Pointer[map[string]struct{}]
}

func newLabelGuard(max int, known ...string) *labelGuard {
	g := &labelGuard{max: max}
	g.seen.Store(&map[string]struct{}{})
	for _, v := range known {
		g.admit(v)
	}
	return g
}

// admitted reports whether v is a value.
func (g *labelGuard) admitted(v string) bool {
	_, ok := (*g.seen.Load())[v]
	return ok
}

// value returns v when admitted, "" for "", else "other".
func (g *labelGuard) value(v string) string {
	if v == "" {
		return ""
	}
	if g.admitted(v) {
		return v
	}
	return "other"
}

// admit makes v a value while there is room, when it is a short printable name.
func (g *labelGuard) admit(v string) {
	if v == "" || g.admitted(v) || len(*g.seen.Load()) >= g.max ||
		len(v) > 128 || strings.IndexFunc(v, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := *g.seen.Load()
	if _, ok := seen[v]; ok || len(seen) >= g.max {
		return
	}
	next := make(map[string]struct{}, len(seen)+1)
	for k := range seen {
		next[k] = struct{}{}
	}
	next[v] = struct{}{}
	g.seen.Store(&next)
}
