package standalone

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mcpgate/mcpgate/provider/file"
	"github.com/mcpgate/mcpgate/translator"
	"github.com/mcpgate/mcpgate/xds"
)

const benchGateway = "bench/gw"

// writeBenchRoutes writes a Gateway and n files, each an AgentgatewayBackend with one static MCP
// target and an HTTPRoute to it.
func writeBenchRoutes(b *testing.B, dir string, n int) {
	b.Helper()
	gw := `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: bench}
spec:
  gatewayClassName: mcpgate
  listeners: [{name: http, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
`
	if err := os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte(gw), 0o644); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		writeBenchRoute(b, dir, i, fmt.Sprintf("/r%d", i))
	}
}

func writeBenchRoute(b *testing.B, dir string, i int, prefix string) {
	b.Helper()
	doc := fmt.Sprintf(`apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: mcp-%[1]d, namespace: bench}
spec:
  mcp:
    targets: [{name: t, static: {host: 127.0.0.1, port: %[2]d, protocol: StreamableHTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r-%[1]d, namespace: bench}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: %[3]s}}]
    backendRefs: [{name: mcp-%[1]d, group: agentgateway.dev, kind: AgentgatewayBackend}]
`, i, 9000+i%1000, prefix)
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("route-%05d.yaml", i)), []byte(doc), 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFileEditToSnapshot measures, at 1,000 HTTPRoutes, the time from an edit of one
// route's file (once written) to the new snapshot version reaching a Delta ADS client subscribed
// to the gateway's route configurations, through the pipeline `mcpgate run` uses (file.Watch ->
// translator -> xds.Server). "watch" includes the file provider's debounce
// (file.DebounceDelay); "apply" calls the same steps directly after the edit and reports where
// the time goes: load-ms (file.Cache.Load, as Watch reloads: every file read, the changed one
// decoded again), apply-ms (translate and set the snapshots), the rest being the push to the
// client.
func BenchmarkFileEditToSnapshot(b *testing.B) {
	const routes = 1000
	for _, mode := range []string{"watch", "apply"} {
		b.Run(fmt.Sprintf("routes=%d/%s", routes, mode), func(b *testing.B) {
			dir := b.TempDir()
			writeBenchRoutes(b, dir, routes)
			srv := xds.New(nil)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			g := grpc.NewServer(xds.GRPCServerOptions()...)
			srv.Register(g)
			go func() { _ = g.Serve(lis) }()
			defer g.Stop()
			p := newPipeline(srv, slog.New(slog.DiscardHandler), nil, nil, translator.Options{BindAddress: "127.0.0.1"})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var cache file.Cache
			if mode == "watch" {
				go func() { _ = file.Watch(ctx, []string{dir}, p.apply) }()
			} else {
				p.apply(cache.Load(dir))
			}

			cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
			if err != nil {
				b.Fatal(err)
			}
			// recv waits for a route configuration at a version other than last, ACKs it, and
			// returns its version.
			recv := func(last string) string {
				for {
					r, err := stream.Recv()
					if err != nil {
						b.Fatal(err)
					}
					if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
						b.Fatal(err)
					}
					if v := r.GetSystemVersionInfo(); v != last && len(r.GetResources()) > 0 {
						return v
					}
				}
			}
			if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{
				Node: &corev3.Node{Id: "bench", Cluster: benchGateway}, TypeUrl: resourcev3.RouteType,
			}); err != nil {
				b.Fatal(err)
			}
			version := recv("")
			var load, apply time.Duration
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				writeBenchRoute(b, dir, 0, fmt.Sprintf("/edit-%d", i))
				b.StartTimer()
				if mode == "apply" {
					t0 := time.Now()
					res, src, err := cache.Load(dir)
					t1 := time.Now()
					p.apply(res, src, err)
					load, apply = load+t1.Sub(t0), apply+time.Since(t1)
				}
				version = recv(version)
			}
			b.StopTimer()
			if mode == "apply" {
				b.ReportMetric(float64(load.Microseconds())/1000/float64(b.N), "load-ms")
				b.ReportMetric(float64(apply.Microseconds())/1000/float64(b.N), "apply-ms")
			}
			if s, ok := srv.Snapshot(benchGateway); !ok || len(s.GetResources(resourcev3.ClusterType)) != routes {
				b.Fatalf("the snapshot does not hold %d clusters", routes)
			}
		})
	}
}

// BenchmarkControlPlaneMemory measures what the control plane holds for n HTTPRoutes (each with
// its own MCP backend, as in BenchmarkFileEditToSnapshot): the pipeline `mcpgate run` uses
// (file.Watch with its per-file cache, the translator's Cache, the xDS snapshots) is started on
// n route files and each iteration edits one route and waits for the new snapshot. Reported:
// live-MiB, the heap still in use after a garbage collection once the first snapshot is served
// (what stays resident for n routes), after-edits-MiB, the same after the edits (an edit keeps
// no more than one translation alive), and peak-heap-MiB, the largest heap the Go runtime held
// (HeapSys, which bounds the resident size the heap needs; the process adds its code and
// stacks). The controller in Kubernetes holds the same, with informers in place of the files.
func BenchmarkControlPlaneMemory(b *testing.B) {
	for _, routes := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d", routes), func(b *testing.B) {
			dir := b.TempDir()
			writeBenchRoutes(b, dir, routes)
			base := liveHeap()
			srv := xds.New(nil)
			p := newPipeline(srv, slog.New(slog.DiscardHandler), nil, nil, translator.Options{BindAddress: "127.0.0.1"})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() { defer close(done); _ = file.Watch(ctx, []string{dir}, p.apply) }()
			defer func() { cancel(); <-done }()
			version := waitSnapshot(b, srv, routes, "")
			live := liveHeap() - base
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				writeBenchRoute(b, dir, 0, fmt.Sprintf("/mem-%d", i))
				b.StartTimer()
				version = waitSnapshot(b, srv, routes, version)
			}
			b.StopTimer()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(live)/(1<<20), "live-MiB")
			b.ReportMetric(float64(liveHeap()-base)/(1<<20), "after-edits-MiB")
			b.ReportMetric(float64(ms.HeapSys)/(1<<20), "peak-heap-MiB")
		})
	}
}

// liveHeap is the heap in use after a full garbage collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// waitSnapshot waits until the bench gateway's snapshot has routes clusters at a version other
// than last, and returns that version.
func waitSnapshot(b *testing.B, srv *xds.Server, routes int, last string) string {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if s, ok := srv.Snapshot(benchGateway); ok && len(s.GetResources(resourcev3.ClusterType)) == routes {
			if v := s.GetVersion(resourcev3.RouteType); v != last {
				return v
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("no new snapshot with %d clusters after a minute", routes)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
