package dataplane

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// grpcConns holds one gRPC client connection per cluster used by envoy_grpc (the ext_proc
// cluster, the xDS cluster). Like Envoy's async gRPC client, a call to a cluster whose endpoints
// refuse connections fails fast (UNAVAILABLE) and the next call tries again.
type grpcConns struct {
	mu    sync.Mutex
	conns map[string]*grpcEntry
	ups   *upstreams
	snap  func() *xdsconf.Snapshot
	stats *Stats
}

type grpcEntry struct {
	cfg *xdsconf.Cluster
	cc  *grpc.ClientConn
}

// conn returns the connection to a cluster of the current configuration.
func (g *grpcConns) conn(name string) (grpc.ClientConnInterface, error) {
	snap := g.snap()
	c := snap.Clusters[name]
	if c == nil {
		return nil, fmt.Errorf("cluster %q not found", name)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if e, ok := g.conns[name]; ok && e.cfg == c {
		return e.cc, nil
	}
	// A changed cluster gets a new connection; the old one stays for the streams it carries.
	uc := g.ups.get(c)
	var rr atomic.Uint64
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		eps := g.ups.endpoints(ctx, uc, g.snap())
		if len(eps) == 0 {
			return nil, fmt.Errorf("cluster %q: no endpoints", name)
		}
		e := eps[(rr.Add(1)-1)%uint64(len(eps))]
		d := net.Dialer{Timeout: c.ConnectTimeout}
		return d.DialContext(ctx, e.Network, e.Addr())
	}
	creds := insecure.NewCredentials()
	if c.TLS != nil {
		creds = credentials.NewTLS(c.TLS.Clone())
	}
	cc, err := grpc.NewClient("passthrough:///"+name,
		grpc.WithContextDialer(dialer),
		grpc.WithTransportCredentials(creds),
		grpc.WithAuthority(name), // Envoy: the :authority of an envoy_grpc call is the cluster name
		grpc.WithStatsHandler(g.stats.GRPCHandler(c.StatName)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, MaxDelay: time.Second},
			MinConnectTimeout: c.ConnectTimeout,
		}))
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", name, err)
	}
	g.conns[name] = &grpcEntry{cfg: c, cc: cc}
	return cc, nil
}

func (g *grpcConns) closeAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, e := range g.conns {
		e.cc.Close()
	}
}
