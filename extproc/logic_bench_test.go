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

// BenchmarkStreamLogic measures ext_proc's own work for a buffered tools/call (the four messages
// of Envoy's sequence handled by one stream, without gRPC): what mcpgate adds to the protocol's
// floor. off: an MCP route without policy; on: the lab's JWT (cached token) and CEL rules.
func BenchmarkStreamLogic(b *testing.B) {
	srv := newPolicyServer(b, Config{Audit: io.Discard}, &policyv1.Policy{
		Name: "lab",
		Jwt: &policyv1.JWTAuthentication{Providers: []*policyv1.JWTProvider{
			{Issuer: "solo.io", Jwks: &policyv1.JWTProvider_InlineJwks{InlineJwks: extproctest.LabJWKS}},
		}},
		TrafficRules: []*policyv1.Rule{{Expression: `jwt.org == "solo.io"`, Source: "rbac#0"}},
		McpRules:     []*policyv1.Rule{{Expression: `mcp.tool.name in ["fetch", "echo"]`, Source: "tools#0"}},
	})
	call := []byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"https://httpbin.org/get"}}}`)
	answer := []byte(`{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"ok"}]}}`)
	// The client sends the session sealed for its caller (package bind); the server names it in
	// its answer, which ext_proc seals again.
	for _, tc := range []struct{ name, policy, token, session string }{
		{"off", "", "", extproctest.AnonSession("S1")},
		{"on", "lab", extproctest.LabToken, extproctest.LabSession("S1")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			route := extproctest.Route{Gateway: "ns/gw", Route: "ns/mcp/rule/0", Policy: tc.policy, MCP: contract.TransportStreamableHTTP, Backend: "ns/b", Target: "t"}
			ctx := grpcmd.NewIncomingContext(context.Background(), route.MD())
			hs := []extproctest.Header{{Name: ":method", Value: "POST"}, {Name: ":path", Value: "/mcp"}, {Name: ":authority", Value: "gw"},
				{Name: "content-type", Value: "application/json"}, {Name: "mcp-session-id", Value: tc.session}}
			if tc.token != "" {
				hs = append(hs, extproctest.Header{Name: "authorization", Value: "Bearer " + tc.token})
			}
			msgs := []*extprocv3.ProcessingRequest{
				extproctest.RequestHeadersMsg(hs, false),
				extproctest.RequestBodyMsg(call, true),
				extproctest.ResponseHeadersMsg([]extproctest.Header{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/json"}, {Name: "mcp-session-id", Value: "S1"}}, false),
				extproctest.ResponseBodyMsg(answer, true),
			}
			b.ReportAllocs()
			for b.Loop() {
				st := srv.newStream(ctx)
				for _, m := range msgs {
					resp, err := st.handle(m)
					if err != nil || resp.GetImmediateResponse() != nil {
						b.Fatalf("%v %v", resp, err)
					}
				}
				st.end()
			}
		})
	}
}
