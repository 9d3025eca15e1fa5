package extproc

import (
	"context"
	"io"
	"reflect"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	"github.com/mcpgate/mcpgate/extproc/mcp"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// newPolicyServer returns a Server of cfg holding policy p, closed when tb ends.
func newPolicyServer(tb testing.TB, cfg Config, p *policyv1.Policy) *Server {
	tb.Helper()
	if cfg.SessionKey == nil {
		cfg.SessionKey = extproctest.SessionKey()
	}
	srv, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Close)
	a, err := anypb.New(p)
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.HandlePolicies(contract.PolicyTypeURL, map[string]*anypb.Any{p.GetName(): a}); err != nil {
		tb.Fatal(err)
	}
	return srv
}

// TestRecycledStreamKeepsNothing: an ended stream, kept for the next one, holds nothing of its
// request: every field is zero but the storage of its metadata encoding.
func TestRecycledStreamKeepsNothing(t *testing.T) {
	srv := newPolicyServer(t, Config{Audit: io.Discard}, &policyv1.Policy{Name: "p",
		TrafficRules: []*policyv1.Rule{{Expression: `request.method == "POST"`, Source: "rbac#0"}},
		McpRules:     []*policyv1.Rule{{Expression: `mcp.tool.name == "fetch"`, Source: "tools#0"}}})
	route := extproctest.Route{Gateway: "ns/gw", Route: "ns/r/rule/0", Policy: "p", MCP: contract.TransportStreamableHTTP, Backend: "ns/b", Target: "t"}
	st := srv.newStream(grpcmd.NewIncomingContext(context.Background(), route.MD()))
	for _, m := range []*extprocv3.ProcessingRequest{
		extproctest.RequestHeadersMsg([]extproctest.Header{{Name: ":method", Value: "POST"}, {Name: ":path", Value: "/mcp"},
			{Name: "content-type", Value: "application/json"}, {Name: "mcp-session-id", Value: extproctest.AnonSession("S1")}}, false),
		extproctest.RequestBodyMsg([]byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"u"}}}`), true),
		extproctest.ResponseHeadersMsg([]extproctest.Header{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/json"}}, false),
	} {
		if r, err := st.handle(m); err != nil || r.GetImmediateResponse() != nil {
			t.Fatalf("%v %v", r, err)
		}
	}
	// Ended with its call unanswered: end finishes it, then recycles st.
	st.end()
	if cap(st.rep.raw) == 0 {
		t.Error("the metadata encoding's storage was not kept")
	}
	checkZero(t, reflect.ValueOf(st).Elem(), "stream", "stream.rep.raw")
}

// checkZero fails for each field of v (a struct, walked into structs) that is not zero, but the
// field named keep.
func checkZero(t *testing.T, v reflect.Value, path, keep string) {
	t.Helper()
	if path == keep {
		return
	}
	if v.Kind() == reflect.Struct {
		for i := range v.NumField() {
			checkZero(t, v.Field(i), path+"."+v.Type().Field(i).Name, keep)
		}
		return
	}
	if !v.IsZero() {
		t.Errorf("recycled stream keeps %s", path)
	}
}

// TestContractFields: a reply's metadata storage holds every field ext_proc sends.
func TestContractFields(t *testing.T) {
	n := 0
	for _, f := range contract.Fields() {
		if f.Source == contract.FromExtProc || f.Fallback == contract.FromExtProc {
			n++
		}
	}
	if n != contractFields {
		t.Errorf("contractFields = %d, contract.Fields() has %d from ext_proc", contractFields, n)
	}
}

// TestRecycledStorageBounded: a recycled stream keeps its metadata encoding's storage up to
// maxRecycledRaw bytes, emptied; a larger one (a reply with long values) is dropped, not held by
// the pool for every later stream.
func TestRecycledStorageBounded(t *testing.T) {
	srv := newPolicyServer(t, Config{Audit: io.Discard}, &policyv1.Policy{Name: "p"})
	for _, c := range []struct {
		size int
		kept bool
	}{{maxRecycledRaw, true}, {maxRecycledRaw + 1, false}} {
		st := srv.newStream(context.Background())
		st.rep.raw = make([]byte, 10, c.size)
		st.end()
		if kept := cap(st.rep.raw) == c.size; kept != c.kept || (kept && len(st.rep.raw) != 0) {
			t.Errorf("storage of %d bytes: recycled with len %d cap %d, want kept %v and empty", c.size, len(st.rep.raw), cap(st.rep.raw), c.kept)
		}
	}
}

// TestItemFilterOutlivesStream: a list filter, which a parked exchange keeps past its stream, reads
// the request's headers after the stream is recycled (their storage is the stream's), for tools and
// for the other items alike.
func TestItemFilterOutlivesStream(t *testing.T) {
	srv := newPolicyServer(t, Config{Audit: io.Discard}, &policyv1.Policy{Name: "p",
		McpRules: []*policyv1.Rule{{Expression: `request.headers["x-team"] == "red"`, Source: "tools#0"}}})
	route := extproctest.Route{Gateway: "ns/gw", Route: "ns/r/rule/0", Policy: "p", MCP: contract.TransportStreamableHTTP, Backend: "ns/b", Target: "t"}
	st := srv.newStream(grpcmd.NewIncomingContext(context.Background(), route.MD()))
	if r, err := st.handle(extproctest.RequestHeadersMsg([]extproctest.Header{{Name: ":method", Value: "POST"}, {Name: ":path", Value: "/mcp"},
		{Name: "content-type", Value: "application/json"}, {Name: "x-team", Value: "red"}}, false)); err != nil || r.GetImmediateResponse() != nil {
		t.Fatalf("%v %v", r, err)
	}
	f := st.itemFilter()
	ctx := st.ctx
	st.end()
	allow := f.allow(ctx)
	for _, it := range []mcp.Item{mcp.Tool, mcp.Prompt, mcp.Resource} {
		if !allow(it, "fetch", []byte(`{"name":"fetch"}`)) {
			t.Errorf("the filter of an ended stream no longer reads its request's headers (%s)", it)
		}
	}
}

// TestParkedExchangeOutlivesStream: an exchange parked in the session table (a legacy SSE POST's)
// keeps its record after its stream is recycled (a stream's first exchange is in its storage).
func TestParkedExchangeOutlivesStream(t *testing.T) {
	srv := newPolicyServer(t, Config{Audit: io.Discard}, &policyv1.Policy{Name: "p",
		McpRules: []*policyv1.Rule{{Expression: `mcp.tool.name == "fetch"`, Source: "tools#0"}}})
	route := extproctest.Route{Gateway: "ns/gw", Route: "ns/r/rule/0", Policy: "p", MCP: contract.TransportStreamableHTTP, Backend: "ns/b", Target: "t"}
	st := srv.newStream(grpcmd.NewIncomingContext(context.Background(), route.MD()))
	for _, m := range []*extprocv3.ProcessingRequest{
		extproctest.RequestHeadersMsg([]extproctest.Header{{Name: ":method", Value: "POST"}, {Name: ":path", Value: "/message?sessionId=" + extproctest.AnonSession("s1")},
			{Name: "content-type", Value: "application/json"}}, false),
		extproctest.RequestBodyMsg([]byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"u"}}}`), true),
	} {
		if r, err := st.handle(m); err != nil || r.GetImmediateResponse() != nil {
			t.Fatalf("%v %v", r, err)
		}
	}
	if len(st.posted) != 1 || st.posted[0].ex == &st.firstEx {
		t.Fatalf("posted = %v: the parked exchange is not a copy out of the stream", st.posted)
	}
	key := st.posted[0].key
	st.end()
	ex, ok := srv.sessions.Take(key)
	if !ok || ex.rec.Method != "tools/call" || ex.rec.Tool != "fetch" || string(ex.rec.ID) != "7" {
		t.Fatalf("parked exchange after its stream ended: %v %+v", ok, ex)
	}
}
