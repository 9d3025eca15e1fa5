package extproc

import (
	"context"
	"io"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	grpcmd "google.golang.org/grpc/metadata"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// FuzzStream plays Envoy's messages with arbitrary bodies, content types and SSE chunking
// through a stream under tool rules, for each kind of request (a Streamable HTTP POST, a legacy
// SSE POST, a GET stream) on a target declaring either transport: no panic, and every reply is
// one Envoy accepts for its message (its kind or an immediate response, headers in raw_value).
func FuzzStream(f *testing.F) {
	srv := newPolicyServer(f, Config{Audit: io.Discard, MaxBodyBytes: 4096},
		&policyv1.Policy{Name: "p", McpRules: []*policyv1.Rule{{Expression: `mcp.tool.name == "fetch"`, Source: "tools#0"}}})
	// shape%3 is the request (see shapes), shape/3%2 the transport the target declares.
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), []byte("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"x\"}]}}\n\n"), uint8(0), uint16(9), uint8(0))
	f.Add([]byte(`[{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-env"}}]`), []byte(`[{"jsonrpc":"2.0","id":2,"result":{}}]`), uint8(1), uint16(3), uint8(3))
	f.Add([]byte(`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"get-env"}}`), []byte("event: endpoint\ndata: /m?sessionId=s\n\ndata: {\"id\":\"a\",\"result\":{}}\n\n"), uint8(0), uint16(20), uint8(4))
	f.Add([]byte(`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"get-env"}}`), []byte(`{"jsonrpc":"2.0","id":"a","result":{}}`), uint8(1), uint16(5), uint8(1))
	f.Add([]byte(nil), []byte("event: endpoint\ndata: /m?sessionId=s\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"x\"}]}}\n\n"), uint8(0), uint16(30), uint8(2))
	f.Add([]byte(nil), []byte(": ok\n\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"x\"}]}}\n\n"), uint8(0), uint16(12), uint8(5))
	shapes := []struct{ method, path string }{{"POST", "/mcp"}, {"POST", "/m?sessionId=s"}, {"GET", "/sse"}}
	f.Fuzz(func(t *testing.T, reqBody, respBody []byte, ctKind uint8, cut uint16, shape uint8) {
		req := shapes[int(shape)%3]
		transport := []string{contract.TransportStreamableHTTP, contract.TransportSSE}[int(shape)/3%2]
		route := extproctest.Route{Route: "ns/r/rule/0", Policy: "p", MCP: transport, Backend: "ns/b", Target: "t"}
		st := srv.newStream(grpcmd.NewIncomingContext(context.Background(), route.MD()))
		defer st.end()
		ct := []string{"text/event-stream", "application/json", "text/plain", ""}[int(ctKind)%4]
		c := int(cut) % (len(respBody) + 1)
		get := req.method == "GET"
		msgs := []*extprocv3.ProcessingRequest{
			extproctest.RequestHeadersMsg([]extproctest.Header{{Name: ":method", Value: req.method}, {Name: ":path", Value: req.path}}, get),
		}
		if !get {
			msgs = append(msgs, extproctest.RequestBodyMsg(reqBody, true))
		}
		msgs = append(msgs,
			extproctest.ResponseHeadersMsg([]extproctest.Header{{Name: ":status", Value: "200"}, {Name: "content-type", Value: ct}}, false),
			extproctest.ResponseBodyMsg(respBody[:c], false),
			extproctest.ResponseBodyMsg(respBody[c:], true),
		)
		for _, m := range msgs {
			resp, err := st.handle(m)
			if err != nil {
				t.Fatalf("handle: %v", err)
			}
			if err := extproctest.CheckReply(m, resp); err != nil {
				t.Fatal(err)
			}
			if resp.GetImmediateResponse() != nil {
				return
			}
		}
	})
}
