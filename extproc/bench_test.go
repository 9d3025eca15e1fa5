package extproc_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// BenchmarkToolsCall plays Envoy's four messages of a buffered tools/call through the real gRPC
// server on a Unix socket, without policy (off) and with the lab's JWT and CEL rules (on). The
// floor comparison and the report are extproc/bench's; this is for profiling
// (go test -bench ToolsCall -cpuprofile).
func BenchmarkToolsCall(b *testing.B) {
	srv, err := extproc.New(extproc.Config{Audit: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	p := labPolicy(newSigner(b))
	res, err := anyOf(p)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.HandlePolicies(contract.PolicyTypeURL, res); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(b.TempDir(), "ep.sock")
	lis, err := extproc.Listen("unix://" + sock)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx, lis)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := extprocv3.NewExternalProcessorClient(conn)
	call := []byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"https://httpbin.org/get"}}}`)
	answer := []byte(`{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"ok"}]}}`)
	for _, tc := range []struct {
		name, policy, token string
	}{{"off", "", ""}, {"on", "lab", extproctest.LabToken}} {
		b.Run(tc.name, func(b *testing.B) {
			route := streamableRoute
			route.Policy = tc.policy
			hs := postHeaders("/mcp", tc.token)
			rh := respHeaders("200", "application/json")
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s, err := extproctest.Open(ctx, c, route)
					if err != nil {
						b.Fatal(err)
					}
					for _, step := range []func() (*extprocv3.ProcessingResponse, error){
						func() (*extprocv3.ProcessingResponse, error) { return s.RequestHeaders(hs, false) },
						func() (*extprocv3.ProcessingResponse, error) { return s.RequestBody(call, true) },
						func() (*extprocv3.ProcessingResponse, error) { return s.ResponseHeaders(rh, false) },
						func() (*extprocv3.ProcessingResponse, error) { return s.ResponseBody(answer, true) },
					} {
						resp, err := step()
						if err != nil || resp.GetImmediateResponse() != nil {
							b.Fatalf("%v %v", resp, err)
						}
					}
					s.Close()
				}
			})
		})
	}
}

// BenchmarkPolicyUpdate: ext_proc receives the whole set of 500 policies (the EG-shaped case:
// each with its own JWT provider and inline JWKS, and a CEL rule) after an edit of one of them.
func BenchmarkPolicyUpdate(b *testing.B) {
	srv, err := extproc.New(extproc.Config{Audit: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	sg := newSigner(b)
	policies := make([]*policyv1.Policy, 500)
	for i := range policies {
		p := labPolicy(sg)
		p.Name = fmt.Sprintf("policy-%d", i)
		p.Jwt.Providers[1].Issuer = fmt.Sprintf("https://issuer-%d.test", i)
		policies[i] = p
	}
	res, err := anyOf(policies...)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.HandlePolicies(contract.PolicyTypeURL, res); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		edited := proto.CloneOf(policies[0])
		edited.TrafficRules[0].Expression = fmt.Sprintf(`jwt.org == "solo.io" || jwt.sub == "user-%d"`, i)
		a, err := anypb.New(edited)
		if err != nil {
			b.Fatal(err)
		}
		res[edited.GetName()] = a
		if err := srv.HandlePolicies(contract.PolicyTypeURL, maps.Clone(res)); err != nil {
			b.Fatal(err)
		}
	}
}
