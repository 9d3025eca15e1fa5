package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/contract"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
	"github.com/mcpgate/mcpgate/xds"
	"github.com/mcpgate/mcpgate/xds/client"
	"github.com/mcpgate/mcpgate/xds/internal/xdstest"
)

const waitFor = 10 * time.Second

// call is one call of the handler.
type call struct {
	typeURL string
	names   []string
	res     map[string]*anypb.Any
}

// recorder is a handler that records its calls and rejects any set holding a name in reject.
type recorder struct {
	calls  chan call
	mu     sync.Mutex
	reject string
}

func newRecorder() *recorder { return &recorder{calls: make(chan call, 100)} }

func (r *recorder) handle(typeURL string, res map[string]*anypb.Any) error {
	names := slices.Sorted(maps.Keys(res))
	r.calls <- call{typeURL, names, res}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reject != "" && slices.Contains(names, r.reject) {
		return errors.New("refusing " + r.reject)
	}
	return nil
}

// next returns the next call for typeURL, skipping others.
func (r *recorder) next(t *testing.T, typeURL string) call {
	t.Helper()
	return r.nextWithin(t, typeURL, waitFor)
}

// nextWithin is next with a wait of d.
func (r *recorder) nextWithin(t *testing.T, typeURL string, d time.Duration) call {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case c := <-r.calls:
			if c.typeURL == typeURL {
				return c
			}
		case <-timeout:
			t.Fatalf("handler not called for %s", typeURL)
		}
	}
}

func policies(names ...string) map[string]map[string][]proto.Message {
	var ps []proto.Message
	for _, n := range names {
		ps = append(ps, xdstest.Policy(n))
	}
	return map[string]map[string][]proto.Message{contract.AllGateways: {contract.PolicyTypeURL: ps}}
}

func run(t *testing.T, cfg client.Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- client.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func equal(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %q, want %q", what, got, want)
	}
}

func TestPolicies(t *testing.T) {
	for _, sotw := range []bool{false, true} {
		name := map[bool]string{false: "delta", true: "sotw"}[sotw]
		t.Run(name, func(t *testing.T) {
			logs := &xdstest.Logs{}
			srv := xds.New(logs.Logger())
			addr := xdstest.Serve(t, srv)
			rec := newRecorder()
			run(t, client.Config{Addr: addr, Node: &corev3.Node{Id: "extproc", Cluster: contract.AllGateways}, TypeURLs: []string{contract.PolicyTypeURL}, Handler: rec.handle, SotW: sotw})

			// The group does not exist yet: the first call comes with it.
			if err := srv.Update(policies("a")); err != nil {
				t.Fatal(err)
			}
			c := rec.next(t, contract.PolicyTypeURL)
			equal(t, "first set", c.names, "a")
			var p policyv1.Policy
			if err := c.res["a"].UnmarshalTo(&p); err != nil || p.GetName() != "a" || len(p.GetMcpRules()) != 1 {
				t.Errorf("policy a: %v %v", &p, err)
			}

			if err := srv.Update(policies("a", "b")); err != nil {
				t.Fatal(err)
			}
			equal(t, "second set", rec.next(t, contract.PolicyTypeURL).names, "a", "b")

			// A rejected set is NACKed with the handler's message; the next one still comes,
			// built on what was accepted.
			rec.mu.Lock()
			rec.reject = "bad"
			rec.mu.Unlock()
			if err := srv.Update(policies("a", "b", "bad")); err != nil {
				t.Fatal(err)
			}
			equal(t, "rejected set", rec.next(t, contract.PolicyTypeURL).names, "a", "b", "bad")
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			if _, err := logs.Wait(ctx, "ERROR", "NACK", "api="+name, "node=extproc", "version=3", "error=refusing bad"); err != nil {
				t.Error(err)
			}
			// The client holds the rejected resource as sent (the handler keeps what it could
			// apply): a Delta response that does not mention it leaves it in the set.
			rec.mu.Lock()
			rec.reject = ""
			rec.mu.Unlock()
			if err := srv.Update(policies("a", "b", "bad", "c")); err != nil {
				t.Fatal(err)
			}
			equal(t, "set after a NACK", rec.next(t, contract.PolicyTypeURL).names, "a", "b", "bad", "c")
			if _, err := logs.Wait(ctx, "INFO", "ACK after a NACK", "api="+name, "node=extproc", "version=4"); err != nil {
				t.Error(err)
			}
			if err := srv.Update(policies("b", "c")); err != nil {
				t.Fatal(err)
			}
			equal(t, "removals after a NACK", rec.next(t, contract.PolicyTypeURL).names, "b", "c")
		})
	}
}

// TestEnvoyTypes subscribes to the four Envoy types by wildcard, as the Envoy test double does.
func TestEnvoyTypes(t *testing.T) {
	for _, sotw := range []bool{false, true} {
		t.Run(map[bool]string{false: "delta", true: "sotw"}[sotw], func(t *testing.T) {
			srv := xds.New(nil)
			if err := srv.Update(map[string]map[string][]proto.Message{"ns/gw": xdstest.Gateway("ns/gw", 9000, "/")}); err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			run(t, client.Config{Addr: xdstest.Serve(t, srv), Node: &corev3.Node{Id: "ns/gw"}, TypeURLs: xdstest.EnvoyTypes(), Handler: rec.handle, SotW: sotw})
			want := map[string]string{
				resourcev3.ListenerType: xdstest.ListenerName("ns/gw"), resourcev3.RouteType: xdstest.ListenerName("ns/gw"),
				resourcev3.ClusterType: xdstest.ClusterName("ns/gw"), resourcev3.EndpointType: xdstest.ClusterName("ns/gw"),
			}
			for range xdstest.EnvoyTypes() {
				select {
				case c := <-rec.calls:
					equal(t, c.typeURL, c.names, want[c.typeURL])
					delete(want, c.typeURL)
				case <-time.After(waitFor):
					t.Fatalf("no set of %v", slices.Collect(maps.Keys(want)))
				}
			}
		})
	}
}

// TestTLS connects with mutual TLS, over TCP and over a Unix socket, to a server that requires
// a client certificate and binds the node group to it.
func TestTLS(t *testing.T) {
	ca := xdstest.NewCA(t)
	opt, err := xds.ServerTLS(&tls.Config{Certificates: []tls.Certificate{ca.Server(t, "xds.test").TLS}, ClientCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	srv := xds.New(nil)
	srv.BindIdentity(xdstest.Identity)
	if err := srv.Update(policies("p")); err != nil {
		t.Fatal(err)
	}
	cert := ca.Client(t, xdstest.GroupURI(contract.AllGateways))
	for network, addr := range map[string]string{"tcp": xdstest.Serve(t, srv, opt), "unix": xdstest.ServeUnix(t, srv, opt)} {
		t.Run(network, func(t *testing.T) {
			rec := newRecorder()
			run(t, client.Config{
				Addr: addr, Node: &corev3.Node{Id: "extproc", Cluster: contract.AllGateways}, TypeURLs: []string{contract.PolicyTypeURL}, Handler: rec.handle,
				TLS: &tls.Config{Certificates: []tls.Certificate{cert.TLS}, RootCAs: ca.Pool, ServerName: "xds.test"},
			})
			equal(t, "policies", rec.next(t, contract.PolicyTypeURL).names, "p")
		})
	}
}

// TestReconnect stops the server and starts another on the same address with other content:
// the client reconnects by itself and resynchronizes, removals included.
func TestReconnect(t *testing.T) {
	for _, sotw := range []bool{false, true} {
		t.Run(map[bool]string{false: "delta", true: "sotw"}[sotw], func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := lis.Addr().String()
			serve := func(lis net.Listener, names ...string) *grpc.Server {
				srv := xds.New(nil)
				if err := srv.Update(policies(names...)); err != nil {
					t.Fatal(err)
				}
				g := grpc.NewServer()
				srv.Register(g)
				go func() { _ = g.Serve(lis) }()
				return g
			}
			first := serve(lis, "kept", "removed")
			rec := newRecorder()
			run(t, client.Config{
				Addr: addr, Node: &corev3.Node{Cluster: contract.AllGateways}, TypeURLs: []string{contract.PolicyTypeURL}, Handler: rec.handle,
				SotW: sotw, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
			})
			equal(t, "before the restart", rec.next(t, contract.PolicyTypeURL).names, "kept", "removed")
			first.Stop()

			lis, err = net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			second := serve(lis, "kept", "added")
			defer second.Stop()
			equal(t, "after the restart", rec.next(t, contract.PolicyTypeURL).names, "added", "kept")
		})
	}
}

func TestConfigErrors(t *testing.T) {
	err := client.Run(context.Background(), client.Config{})
	for _, want := range []string{"no server address", "no node id or cluster", "no type URL", "no handler"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

// TestLargeResponse receives a response larger than gRPC's default 4 MiB limit on received
// messages: 10,000 routes make a RouteConfiguration of about 4.5 MB and 10,000 JWT policies
// about 5.7 MB.
func TestLargeResponse(t *testing.T) {
	var ps []proto.Message
	for i := range 6 {
		p := xdstest.Policy(fmt.Sprintf("p%d", i))
		p.McpRules[0].Expression = `mcp.tool.name != "` + strings.Repeat("x", 1<<20) + `"`
		ps = append(ps, p)
	}
	for _, sotw := range []bool{false, true} {
		t.Run(map[bool]string{false: "delta", true: "sotw"}[sotw], func(t *testing.T) {
			srv := xds.New(nil)
			if err := srv.Update(map[string]map[string][]proto.Message{contract.AllGateways: {contract.PolicyTypeURL: ps}}); err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			run(t, client.Config{Addr: xdstest.Serve(t, srv), Node: &corev3.Node{Cluster: contract.AllGateways}, TypeURLs: []string{contract.PolicyTypeURL}, Handler: rec.handle, SotW: sotw})
			equal(t, "policies", rec.next(t, contract.PolicyTypeURL).names, "p0", "p1", "p2", "p3", "p4", "p5")
		})
	}
}

// TestVanishedServer cuts the connection off silently, as when the server's node vanishes: the
// client notices with keepalive pings, reconnects and gets the updates it missed.
func TestVanishedServer(t *testing.T) {
	t.Parallel()
	srv := xds.New(nil)
	if err := srv.Update(policies("a")); err != nil {
		t.Fatal(err)
	}
	proxy := xdstest.NewProxy(t, xdstest.Serve(t, srv))
	rec := newRecorder()
	run(t, client.Config{
		Addr: proxy.Addr, Node: &corev3.Node{Cluster: contract.AllGateways}, TypeURLs: []string{contract.PolicyTypeURL}, Handler: rec.handle,
		// gRPC pings at most every 10 s.
		Keepalive:  keepalive.ClientParameters{Time: 10 * time.Second, Timeout: time.Second},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	equal(t, "before", rec.next(t, contract.PolicyTypeURL).names, "a")
	proxy.Cut()
	if err := srv.Update(policies("b")); err != nil {
		t.Fatal(err)
	}
	// The ping goes 10 s after the last response, and gets no answer for 1 s.
	equal(t, "after", rec.nextWithin(t, contract.PolicyTypeURL, 11*time.Second+waitFor).names, "b")
}
