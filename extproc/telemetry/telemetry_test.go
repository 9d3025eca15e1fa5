package telemetry

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/mcpgate/mcpgate/extproc/internal/metrictest"
	"github.com/mcpgate/mcpgate/extproc/mcp"
)

func sampleRecord() *Record {
	return &Record{
		Time:    time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		Gateway: "agentgateway-system/agentgateway", Route: "agentgateway-system/mcp/rule/0",
		Backend: "agentgateway-system/mcp-backend", Target: "mcp-target", Session: "s-1",
		Subject: "user-id", Claims: map[string]any{"org": "solo.io"}, Authn: "ok",
		Method: "tools/call", Tool: "fetch",
		Arguments: json.RawMessage(`{"url":"https://httpbin.org/get","Token":"s3cret","nested":[{"password":"p"}]}`),
		ID:        json.RawMessage(`3`), Decision: DecisionAllow, Rule: "EnterpriseAgentgatewayPolicy/ns/rbac#0",
		HTTPStatus: 200, Outcome: OutcomeResult,
	}
}

func TestAuditLine(t *testing.T) {
	var out bytes.Buffer
	reg := prometheus.NewRegistry()
	tel, err := New(Options{Audit: &out, Registerer: reg, RedactKeys: []string{"token", "PASSWORD"}})
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRecord()
	tel.Finish(r, r.Time.Add(1500*time.Microsecond))
	line := out.String()
	if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
		t.Fatalf("not one line: %q", line)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("audit line is not JSON: %v\n%s", err, line)
	}
	want := map[string]any{
		"time": "2026-01-02T03:04:05.000006Z", "gateway": "agentgateway-system/agentgateway",
		"route": "agentgateway-system/mcp/rule/0", "backend": "agentgateway-system/mcp-backend",
		"target": "mcp-target", "session": "s-1", "subject": "user-id",
		"claims": map[string]any{"org": "solo.io"}, "authn": "ok", "method": "tools/call", "tool": "fetch",
		"arguments":  map[string]any{"url": "https://httpbin.org/get", "Token": "[REDACTED]", "nested": []any{map[string]any{"password": "[REDACTED]"}}},
		"jsonrpc_id": float64(3), "decision": "allow", "rule": "EnterpriseAgentgatewayPolicy/ns/rbac#0",
		"http_status": float64(200), "outcome": "result", "latency_ms": 1.5,
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("audit line\n got %s\nwant %s", gj, wj)
	}
	if strings.Contains(line, "s3cret") {
		t.Error("redacted value written")
	}
	if n := metric(t, reg, "mcpgate_mcp_requests_total", map[string]string{"gateway": r.Gateway, "route": r.Route, "target": r.Target, "method": "tools/call", "tool": "fetch", "decision": "allow", "outcome": "result"}); n != 1 {
		t.Errorf("requests_total = %v", n)
	}
	if n := metric(t, reg, "mcpgate_mcp_request_duration_seconds", map[string]string{"method": "tools/call"}); n != 1 {
		t.Errorf("duration samples = %v", n)
	}
}

// TestToolErrorOutcome: a tool call whose result reports isError is told apart from a result in
// the audit line, the requests metric and the span (error.type tool_error, as OpenTelemetry's MCP
// conventions name it); its latency is measured like any answer's.
func TestToolErrorOutcome(t *testing.T) {
	var out bytes.Buffer
	reg := prometheus.NewRegistry()
	rec := tracetest.NewSpanRecorder()
	tel, err := New(Options{Audit: &out, Registerer: reg, TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	if err != nil {
		t.Fatal(err)
	}
	tel.AdmitTool("fetch") // as a tools/list answer does
	r := sampleRecord()
	tel.StartSpan(propagation.MapCarrier{}, r, "")
	r.Outcome = OutcomeToolError
	tel.Finish(r, r.Time.Add(time.Millisecond))
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if got["outcome"] != "tool_error" || got["jsonrpc_error"] != nil {
		t.Errorf("audit line %s: want outcome tool_error and no jsonrpc_error", out.String())
	}
	labels := map[string]string{"method": "tools/call", "tool": "fetch", "decision": "allow"}
	if all := metric(t, reg, "mcpgate_mcp_requests_total", labels); all != 1 {
		t.Errorf("requests_total = %v, want 1", all)
	}
	labels["outcome"] = "tool_error"
	if n := metric(t, reg, "mcpgate_mcp_requests_total", labels); n != 1 {
		t.Errorf("requests_total{outcome=tool_error} = %v, want 1", n)
	}
	if n := metric(t, reg, "mcpgate_mcp_request_duration_seconds", map[string]string{"method": "tools/call"}); n != 1 {
		t.Errorf("duration samples = %v, want 1", n)
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	attrs := map[string]string{}
	for _, a := range spans[0].Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["error.type"] != "tool_error" || spans[0].Status().Code != codes.Error {
		t.Errorf("span attributes %v status %v: want error.type tool_error and status Error", attrs, spans[0].Status())
	}
	if _, ok := attrs["rpc.response.status_code"]; ok {
		t.Errorf("span of a tool error has a JSON-RPC error code: %v", attrs)
	}
}

func TestArgumentsTruncated(t *testing.T) {
	var out bytes.Buffer
	tel, _ := New(Options{Audit: &out, MaxArgumentBytes: 16})
	r := sampleRecord()
	r.Arguments = json.RawMessage(`{"text":"ééééééééééé"}`)
	r.HasError, r.ErrorCode, r.Outcome = true, -32602, OutcomeError
	tel.Finish(r, r.Time)
	var got struct {
		Arguments string `json:"arguments"`
		Truncated bool   `json:"arguments_truncated"`
		Code      int    `json:"jsonrpc_error"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if !got.Truncated || got.Arguments != `{"text":"ééé` || got.Code != -32602 {
		t.Errorf("got %+v", got)
	}
}

// TestDetach: a detached record keeps its arguments (cut to their audit size) and id in memory of
// its own: the body they were read from may be reused or freed.
func TestDetach(t *testing.T) {
	var out bytes.Buffer
	tel, _ := New(Options{Audit: &out, MaxArgumentBytes: 12})
	body := []byte(`{"id":"req-1","arguments":{"url":"https://example.com"}}`)
	r := sampleRecord()
	r.ID, r.Arguments = body[6:13], body[26:len(body)-1]
	if n := tel.Detach(r); n != len(`{"url":"http`)+len(`"req-1"`) {
		t.Errorf("Detach = %d bytes", n)
	}
	if r.Arguments != nil {
		t.Error("the record still refers to the body's arguments")
	}
	for i := range body {
		body[i] = '#'
	}
	tel.Finish(r, r.Time)
	var got struct {
		Arguments string `json:"arguments"`
		ID        string `json:"jsonrpc_id"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if got.Arguments != `{"url":"http` || got.ID != "req-1" {
		t.Errorf("after the body changed, the audit line has %+v", got)
	}
}

func TestAppendClaims(t *testing.T) {
	got := string(appendClaims(nil, map[string]any{"org": "solo.io", "exp": float64(2079556104), "groups": []any{"a", "b"}, "admin": true, "n": nil}))
	if got != `{"admin":true,"exp":2079556104,"groups":["a","b"],"n":null,"org":"solo.io"}` {
		t.Errorf("appendClaims = %s", got)
	}
}

func TestAppendStringEscapes(t *testing.T) {
	in := "a\"b\\c\n\t\x01\xff\xfeé\u2028" // a run of invalid bytes: one U+FFFD
	var s string
	if err := json.Unmarshal(appendString(nil, in), &s); err != nil {
		t.Fatal(err)
	}
	if s != "a\"b\\c\n\t\x01\uFFFDé\u2028" {
		t.Errorf("round trip = %q", s)
	}
}

func TestLabelGuard(t *testing.T) {
	g := newLabelGuard(2, "a")
	for _, v := range []string{"b", "c", "a"} {
		g.admit(v)
	}
	if g.value("a") != "a" || g.value("b") != "b" || g.value("c") != "other" || g.value("") != "" {
		t.Error("cap not applied")
	}
	g = newLabelGuard(10)
	for _, v := range []string{"has space", strings.Repeat("x", 200), "é"} {
		if g.admit(v); g.value(v) != "other" {
			t.Errorf("odd value %q admitted", v)
		}
	}
}

func TestOtherMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	tel, err := New(Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	tel.StreamStarted()
	tel.StreamStarted()
	tel.StreamEnded()
	tel.AuthnFailure("Jwt is expired")
	tel.NonJSONRPC("request")
	tel.PolicyUpdate(false)
	if v := metric(t, reg, "mcpgate_extproc_streams_active", nil); v != 1 {
		t.Errorf("streams_active = %v", v)
	}
	if v := metric(t, reg, "mcpgate_authn_failures_total", map[string]string{"reason": "Jwt is expired"}); v != 1 {
		t.Errorf("authn failures = %v", v)
	}
	if v := metric(t, reg, "mcpgate_extproc_non_jsonrpc_bodies_total", map[string]string{"direction": "request"}); v != 1 {
		t.Errorf("non-JSON-RPC bodies = %v", v)
	}
	if v := metric(t, reg, "mcpgate_extproc_policy_updates_total", map[string]string{"result": "nack"}); v != 1 {
		t.Errorf("policy nacks = %v", v)
	}
	if _, err := New(Options{Registerer: reg}); err == nil {
		t.Error("registering twice succeeded")
	}
}

// spanAttrs returns a span's attributes as strings.
func spanAttrs(s sdktrace.ReadOnlySpan) map[string]string {
	attrs := map[string]string{}
	for _, a := range s.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	return attrs
}

// TestSpan: the span of an MCP request is OpenTelemetry's MCP server span: kind SERVER, named
// "METHOD TOOL", a child of the request's W3C trace context, with the conventions' attributes
// (the id as a string, the MCP version of the request's header, the client's address, the code
// of an error as rpc.response.status_code and error.type) and mcpgate's own in its namespace.
func TestSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tel, _ := New(Options{TracerProvider: tp})
	tel.AdmitTool("fetch") // a server listed it
	r := sampleRecord()
	headers := propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"mcp-protocol-version": "2025-06-18"}
	tel.StartSpan(headers, r, "10.1.2.3:50000")
	r.HasError, r.ErrorCode, r.Outcome = true, -32603, OutcomeError
	tel.Finish(r, r.Time.Add(time.Millisecond))
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	if s.Name() != "tools/call fetch" || s.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("span %q parent %v", s.Name(), s.Parent())
	}
	if s.SpanKind() != trace.SpanKindServer {
		t.Errorf("span kind %v, want server", s.SpanKind())
	}
	want := map[string]string{
		"mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "fetch",
		"mcp.session.id": "s-1", "jsonrpc.request.id": "3", "mcp.protocol.version": "2025-06-18",
		"network.transport": "tcp", "network.protocol.name": "http", "client.address": "10.1.2.3", "client.port": "50000",
		"rpc.response.status_code": "-32603", "error.type": "-32603",
		"mcpgate.gateway": "agentgateway-system/agentgateway", "mcpgate.route": "agentgateway-system/mcp/rule/0",
		"mcpgate.target": "mcp-target", "mcpgate.decision": "allow", "mcpgate.outcome": "error",
	}
	got := spanAttrs(s)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("attribute %s = %q not expected", k, got[k])
		}
	}
	if s.Status().Code != codes.Error || s.Status().Description != "JSON-RPC error -32603" {
		t.Errorf("status %v, want Error", s.Status())
	}
	if s.EndTime().Sub(s.StartTime()) != time.Millisecond {
		t.Errorf("span duration %v", s.EndTime().Sub(s.StartTime()))
	}
}

// TestSpanErrors: as OpenTelemetry's MCP conventions classify a server span's errors, a JSON-RPC
// error that says the caller's request could not be served (a refused or unknown tool's -32602)
// has its code but no error.type and no error status; a server's error code, and a request left
// without answer, are errors.
func TestSpanErrors(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tel, _ := New(Options{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	for _, c := range []struct {
		code      int
		hasError  bool
		outcome   string
		errorType string
	}{
		{mcp.CodeInvalidParams, true, OutcomeError, ""},
		{-32601, true, OutcomeError, ""},
		{-32002, true, OutcomeError, ""},
		{-32000, true, OutcomeError, "-32000"},
		{mcp.CodeSessionNotFound, true, OutcomeError, "-32001"},
		{0, false, OutcomeNoAnswer, "no_answer"},
		{0, false, OutcomeResult, ""},
	} {
		r := sampleRecord()
		tel.StartSpan(propagation.MapCarrier{}, r, "")
		r.HasError, r.ErrorCode, r.Outcome = c.hasError, c.code, c.outcome
		tel.Finish(r, r.Time.Add(time.Millisecond))
		spans := rec.Ended()
		s := spans[len(spans)-1]
		attrs := spanAttrs(s)
		if attrs["error.type"] != c.errorType || (s.Status().Code == codes.Error) != (c.errorType != "") {
			t.Errorf("code %d outcome %s: error.type %q status %v, want error.type %q", c.code, c.outcome, attrs["error.type"], s.Status(), c.errorType)
		}
		if want := strconv.Itoa(c.code); c.hasError && attrs["rpc.response.status_code"] != want {
			t.Errorf("code %d: rpc.response.status_code %q", c.code, attrs["rpc.response.status_code"])
		}
		if attrs["mcpgate.outcome"] != c.outcome {
			t.Errorf("code %d: mcpgate.outcome %q, want %q", c.code, attrs["mcpgate.outcome"], c.outcome)
		}
	}
}

// TestSpanRequestID: jsonrpc.request.id is the id's string representation: a string id's value
// (not its JSON), a number as sent; a null id is left out, as the conventions say.
func TestSpanRequestID(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tel, _ := New(Options{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	for raw, want := range map[string]string{`"a"`: "a", `"a\"b\u0041"`: `a"bA`, `7`: "7", `-1.5e3`: "-1.5e3", `null`: "", `"\u00e9"`: "é"} {
		r := sampleRecord()
		r.ID = json.RawMessage(raw)
		tel.StartSpan(propagation.MapCarrier{}, r, "")
		tel.Finish(r, r.Time)
		spans := rec.Ended()
		got, ok := spanAttrs(spans[len(spans)-1])["jsonrpc.request.id"]
		if got != want || ok != (want != "") {
			t.Errorf("id %s: jsonrpc.request.id %q (set %v), want %q", raw, got, ok, want)
		}
	}
}

// TestResourceURIRedacted: a resource URI's credentials (user:password, a query's token) are
// redacted in the audit line and the span as they are in tool arguments.
func TestResourceURIRedacted(t *testing.T) {
	var out bytes.Buffer
	rec := tracetest.NewSpanRecorder()
	tel, err := New(Options{Audit: &out, RedactKeys: []string{"token", "password"},
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRecord()
	r.Method, r.Tool, r.Arguments = "resources/read", "", nil
	r.Resource = "https://user:pw-s3cret@db.example/x?access_token=t0k3n&page=2"
	tel.StartSpan(propagation.MapCarrier{}, r, "")
	tel.Finish(r, r.Time)
	const want = "https://[REDACTED]@db.example/x?access_token=[REDACTED]&page=2"
	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if line["resource"] != want {
		t.Errorf("audit resource %q, want %q", line["resource"], want)
	}
	if got := spanAttrs(rec.Ended()[0])["mcp.resource.uri"]; got != want {
		t.Errorf("span mcp.resource.uri %q, want %q", got, want)
	}
	// Without redaction keys nothing is redacted, the URI included.
	out.Reset()
	plain, _ := New(Options{Audit: &out, RedactKeys: nil})
	r = sampleRecord()
	r.Resource = "https://user:pw@db.example/x"
	plain.Finish(r, r.Time)
	if !strings.Contains(out.String(), `"resource":"https://user:pw@db.example/x"`) {
		t.Errorf("without redaction keys: %s", out.String())
	}
}

// TestDurationBucketsReachMinutes: a tool call of minutes (MCP routes have no route timeout) is
// counted in a bucket of mcpgate_mcp_request_duration_seconds, not only in +Inf, so that its
// quantiles are not cut at the largest bound.
func TestDurationBucketsReachMinutes(t *testing.T) {
	reg := prometheus.NewRegistry()
	tel, err := New(Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRecord()
	tel.Finish(r, r.Time.Add(4*time.Minute))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "mcpgate_mcp_request_duration_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		for _, b := range h.GetBucket() {
			if b.GetCumulativeCount() == 1 {
				return // the first finite bound that holds the call
			}
		}
		last := h.GetBucket()[len(h.GetBucket())-1]
		t.Fatalf("a 4-minute call is in no finite bucket (the largest bound is %v s)", last.GetUpperBound())
	}
	t.Fatal("mcpgate_mcp_request_duration_seconds not gathered")
}

// TestSpanPromptAndResource: a prompts/get span is named after its prompt and carries
// gen_ai.prompt.name; a resources/read span is named after its method and carries
// mcp.resource.uri (OpenTelemetry's MCP conventions).
func TestSpanPromptAndResource(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tel, _ := New(Options{TracerProvider: tp})
	prompt, resource := sampleRecord(), sampleRecord()
	prompt.Method, prompt.Tool, prompt.Arguments, prompt.Prompt = "prompts/get", "", nil, "greet"
	resource.Method, resource.Tool, resource.Arguments, resource.Resource = "resources/read", "", nil, "file:///a"
	for _, r := range []*Record{prompt, resource} {
		tel.StartSpan(propagation.MapCarrier{}, r, "")
		tel.Finish(r, r.Time.Add(time.Millisecond))
	}
	want := map[string]map[string]string{
		"prompts/get greet": {"gen_ai.prompt.name": "greet", "gen_ai.tool.name": "", "mcp.resource.uri": "", "gen_ai.operation.name": ""},
		"resources/read":    {"mcp.resource.uri": "file:///a", "gen_ai.prompt.name": "", "gen_ai.tool.name": "", "gen_ai.operation.name": ""},
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	for _, s := range spans {
		w, ok := want[s.Name()]
		if !ok {
			t.Errorf("span %q", s.Name())
			continue
		}
		attrs := map[string]string{}
		for _, a := range s.Attributes() {
			attrs[string(a.Key)] = a.Value.String()
		}
		for k, v := range w {
			if attrs[k] != v {
				t.Errorf("%s: attribute %s = %q, want %q", s.Name(), k, attrs[k], v)
			}
		}
	}
}

// collector is an OTLP gRPC trace collector: the real protocol, in process.
type collector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
	// spans are the spans received, as OTLP encodes them.
	spans []*tracepb.Span
	got   chan struct{}
}

func (c *collector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.names = append(c.names, s.GetName())
				c.spans = append(c.spans, s)
			}
		}
	}
	c.mu.Unlock()
	select {
	case c.got <- struct{}{}:
	default:
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// exportTo starts a collector and returns it with a tracer provider that exports to it.
func exportTo(t *testing.T) (*collector, *sdktrace.TracerProvider) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{got: make(chan struct{}, 1)}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, c)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	tp, err := NewOTLPTracerProvider(context.Background(), "http://"+lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return c, tp
}

// TestOTLPExport: a span reaches an OTLP collector through the real exporter (gRPC) with its
// name, kind and the conventions' attributes in their types (client.port an integer).
func TestOTLPExport(t *testing.T) {
	ctx := context.Background()
	c, tp := exportTo(t)
	tel, _ := New(Options{TracerProvider: tp})
	tel.AdmitTool("fetch") // a server listed it
	r := sampleRecord()
	tel.StartSpan(propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, r, "[::1]:4711")
	r.HasError, r.ErrorCode, r.Outcome = true, -32000, OutcomeError
	tel.Finish(r, r.Time.Add(time.Millisecond))
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-c.got
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.names) != 1 || c.names[0] != "tools/call fetch" {
		t.Fatalf("collector got %q", c.names)
	}
	s := c.spans[0]
	if s.GetKind() != tracepb.Span_SPAN_KIND_SERVER || hex.EncodeToString(s.GetParentSpanId()) != "00f067aa0ba902b7" ||
		hex.EncodeToString(s.GetTraceId()) != "4bf92f3577b34da6a3ce929d0e0e4736" || s.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("span kind %v trace %x parent %x status %v", s.GetKind(), s.GetTraceId(), s.GetParentSpanId(), s.GetStatus())
	}
	got := map[string]*commonpb.AnyValue{}
	for _, kv := range s.GetAttributes() {
		got[kv.GetKey()] = kv.GetValue()
	}
	for k, v := range map[string]string{"mcp.method.name": "tools/call", "gen_ai.tool.name": "fetch", "mcp.session.id": "s-1",
		"jsonrpc.request.id": "3", "rpc.response.status_code": "-32000", "error.type": "-32000", "client.address": "::1"} {
		if got[k].GetStringValue() != v {
			t.Errorf("attribute %s = %v, want string %q", k, got[k], v)
		}
	}
	if got["client.port"].GetIntValue() != 4711 {
		t.Errorf("attribute client.port = %v, want int 4711", got["client.port"])
	}
}

// metric sums the series of name whose labels include labels (histograms: the sample count).
func metric(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	v, err := metrictest.Sum(g, name, labels)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestArgumentsRenderedOnce: the metadata and the audit line of a record share one rendering of
// its arguments; redaction decodes and encodes them, which is not to be paid twice per call.
func TestArgumentsRenderedOnce(t *testing.T) {
	tel, err := New(Options{Audit: io.Discard, RedactKeys: []string{"token"}})
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRecord()
	first, _ := tel.Arguments(r)
	if !strings.Contains(string(first), `"Token":"[REDACTED]"`) {
		t.Fatalf("arguments = %s", first)
	}
	if n := testing.AllocsPerRun(10, func() { tel.Arguments(r) }); n != 0 {
		t.Errorf("rendering again allocates %v times: the arguments are rendered anew", n)
	}
}

// TestArgumentsWithoutRedactedKeysKeptAsSent: arguments that name no redacted key in any case
// are kept byte for byte (not decoded and re-encoded); a key spelled with a \u escape is found.
func TestArgumentsWithoutRedactedKeysKeptAsSent(t *testing.T) {
	tel, err := New(Options{Audit: io.Discard, RedactKeys: []string{"password"}})
	if err != nil {
		t.Fatal(err)
	}
	for raw, want := range map[string]string{
		`{"url": "u",  "n":1}`:          `{"url": "u",  "n":1}`,
		`{"PassWord":"p","url":"u"}`:    `{"PassWord":"[REDACTED]","url":"u"}`,
		`{"pass\u0077ord":"p","a":"b"}`: `{"a":"b","password":"[REDACTED]"}`,
	} {
		r := &Record{Arguments: json.RawMessage(raw)}
		if got, _ := tel.Arguments(r); string(got) != want {
			t.Errorf("Arguments(%s) = %s, want %s", raw, got, want)
		}
	}
	plain := json.RawMessage(`{"url":"https://example.com/a","headers":{"accept":"text/html"},"n":[1,2,3]}`)
	if n := testing.AllocsPerRun(20, func() { tel.Arguments(&Record{Arguments: plain}) }); n > 2 {
		t.Errorf("arguments without a redacted key cost %v allocations: they are decoded", n)
	}
}

// TestCountersStartAtZero: the counters of known labels are exported at 0 before their first
// event, so that dashboards show 0, not "no data".
func TestCountersStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"mcpgate_extproc_policy_waits_total": 3, "mcpgate_extproc_policy_updates_total": 2}
	for _, mf := range mfs {
		if n, ok := want[mf.GetName()]; ok {
			if len(mf.GetMetric()) != n {
				t.Errorf("%s: %d series, want %d", mf.GetName(), len(mf.GetMetric()), n)
			}
			delete(want, mf.GetName())
		}
	}
	if len(want) > 0 {
		t.Errorf("not exported before their first event: %v", want)
	}
}

// TestSpanNameOfUnknownItems: a span is named after its tool or prompt only when a server has
// shown it exists (a tools/list answer, a result), as the tool label of the metrics: calls of
// names a client makes up, which the gateway refuses, all get the method's name (span names must
// have few values), their names kept in gen_ai.*.name.
func TestSpanNameOfUnknownItems(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tel, _ := New(Options{TracerProvider: tp})
	tel.AdmitTool("listed")
	for _, c := range []struct {
		method, tool, prompt, outcome string
		want                          string
	}{
		{"tools/call", "listed", "", OutcomeError, "tools/call listed"},
		{"tools/call", "made-up-1", "", OutcomeRefused, "tools/call"},
		{"tools/call", "found-by-calling", "", OutcomeResult, "tools/call found-by-calling"},
		{"prompts/get", "", "made-up-prompt", OutcomeRefused, "prompts/get"},
		{"prompts/get", "", "greet", OutcomeResult, "prompts/get greet"},
		{"made/up-1", "", "", OutcomeError, "other"},
		{"vendor/method", "", "", OutcomeResult, "vendor/method"}, // answered: a method of the server's
	} {
		r := &Record{Time: time.Now(), Method: c.method, Tool: c.tool, Prompt: c.prompt, Outcome: c.outcome}
		tel.StartSpan(propagation.MapCarrier{}, r, "")
		tel.Finish(r, r.Time.Add(time.Millisecond))
		spans := rec.Ended()
		s := spans[len(spans)-1]
		if s.Name() != c.want {
			t.Errorf("%s %s%s (%s): span %q, want %q", c.method, c.tool, c.prompt, c.outcome, s.Name(), c.want)
		}
		if item := c.tool + c.prompt; item != "" && !slices.Contains(slices.Collect(maps.Values(spanAttrs(s))), item) {
			t.Errorf("%s %s: the name is in no attribute: %v", c.method, item, spanAttrs(s))
		}
	}
}
