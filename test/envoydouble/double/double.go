// Package double wires the envoydouble together: it reads the bootstrap, serves its static
// resources, subscribes over Delta ADS, applies each update to the data plane (ACK) or refuses it
// (NACK), and serves the admin endpoints Envoy's tests use (/ready, /config_dump, /server_info,
// /listeners, /stats, /quitquitquit).
package double

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/test/envoydouble/dataplane"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
	"github.com/mcpgate/mcpgate/xds/client"
)

// Options start a double.
type Options struct {
	// Bootstrap is the path given with -c.
	Bootstrap string
	// ServiceNode and ServiceCluster override node.id and node.cluster (--service-node,
	// --service-cluster), as Envoy's flags do.
	ServiceNode string
	// ServiceCluster is --service-cluster: node.cluster, the node group ("NS/GW") served.
	ServiceCluster string
	// Log receives the double's own log (stderr in the command).
	Log *slog.Logger
	// AccessLog receives the stdout access logger's lines.
	AccessLog io.Writer
	// DrainTime is --drain-time-s: how long a graceful drain (admin /drain_listeners?graceful)
	// accepts new connections before the listeners stop; 0 is Envoy's default, 600 s.
	DrainTime time.Duration
}

// defaultDrainTime is Envoy's --drain-time-s default.
const defaultDrainTime = 600 * time.Second

// Double is a running envoydouble.
type Double struct {
	log   *slog.Logger
	boot  *xdsconf.Bootstrap
	dp    *dataplane.Server
	admin *http.Server
	// AdminAddr is the bound admin address ("" without admin).
	AdminAddr string

	cancel   context.CancelFunc
	done     chan struct{}
	quit     chan struct{}
	quitOnce sync.Once
	once     sync.Once

	// drainTime is Options.DrainTime, its default filled in.
	drainTime time.Duration

	mu       sync.Mutex
	applyMu  sync.Mutex
	live     bool
	received map[string]bool
	versions map[string]int
}

// Start loads the bootstrap and starts serving. It fails on a bootstrap error, as Envoy exits.
func Start(ctx context.Context, o Options) (*Double, error) {
	boot, err := xdsconf.LoadBootstrap(o.Bootstrap)
	if err != nil {
		return nil, err
	}
	node := proto.Clone(boot.Node).(*corev3.Node)
	if o.ServiceNode != "" {
		node.Id = o.ServiceNode
	}
	if o.ServiceCluster != "" {
		node.Cluster = o.ServiceCluster
	}
	node.UserAgentName = "envoydouble"
	boot.Node = node
	ctx, cancel := context.WithCancel(ctx)
	d := &Double{log: o.Log, boot: boot, cancel: cancel, done: make(chan struct{}), quit: make(chan struct{}),
		received: map[string]bool{}, versions: map[string]int{}, drainTime: o.DrainTime}
	if d.drainTime <= 0 {
		d.drainTime = defaultDrainTime
	}
	d.dp = dataplane.New(o.Log, o.AccessLog, xdsconf.NewSnapshot(boot), boot.MaxDownstreamConnections)
	if err := d.dp.Update(d.dp.Snapshot(), true); err != nil {
		d.dp.Close()
		cancel()
		return nil, fmt.Errorf("static listeners: %w", err)
	}
	if boot.AdminAddress != "" {
		ln, err := net.Listen("tcp", boot.AdminAddress)
		if err != nil {
			d.dp.Close()
			cancel()
			return nil, fmt.Errorf("admin %s: %w", boot.AdminAddress, err)
		}
		d.AdminAddr = ln.Addr().String()
		d.admin = &http.Server{Handler: d.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = d.admin.Serve(ln) }()
	}
	if boot.ADSCluster == "" {
		d.setLive()
	} else {
		adsCluster := boot.Clusters[boot.ADSCluster]
		addr, err := adsAddress(adsCluster)
		if err != nil {
			d.Close()
			return nil, err
		}
		var types []string
		if boot.CDS {
			types = append(types, xdsconf.ClusterType, xdsconf.EndpointType)
		}
		if boot.LDS {
			types = append(types, xdsconf.ListenerType, xdsconf.RouteType)
		}
		if boot.CDS || boot.LDS {
			// Secrets: Envoy asks SDS (over ADS, sds_config ads) for the Secrets its listeners'
			// and clusters' TLS contexts name; the double takes every Secret of its group (below).
			types = append(types, xdsconf.SecretType)
		}
		// ADS (Delta, or SotW with api_type GRPC) with wildcard subscriptions. Unlike Envoy,
		// which subscribes to route configurations and load assignments by the names its
		// listeners and clusters use, the double takes every resource of each type of its group.
		// As Envoy does, it dials the ADS cluster with the cluster's transport_socket: TLS
		// (client certificate presented, server verified as the validation_context says) when
		// the cluster has one, plaintext otherwise.
		// Its stream is a request of the ADS cluster (upstream_rq_total).
		dial := []grpc.DialOption{grpc.WithStatsHandler(d.dp.Stats().GRPCHandler(adsCluster.StatName))}
		if adsCluster.TLS == nil {
			dial = append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
		}
		cfg := client.Config{Addr: addr, Node: node, TypeURLs: types, Handler: d.apply, Logger: o.Log,
			SotW: boot.SotW, MaxBackoff: time.Second, TLS: adsCluster.TLS, DialOptions: dial}
		go func() {
			if err := client.Run(ctx, cfg); err != nil {
				d.log.Error("ADS", "err", err)
			}
			close(d.done)
		}()
		go func() {
			// Envoy's initial_fetch_timeout: the server goes LIVE even without a first answer.
			select {
			case <-time.After(boot.InitialFetchTimeout):
				if !d.Live() {
					d.log.Warn("initial fetch timeout: going LIVE without a complete configuration")
					d.setLive()
				}
			case <-ctx.Done():
			}
		}()
		return d, nil
	}
	close(d.done)
	return d, nil
}

// adsAddress is the address of the xDS cluster's (single) endpoint for the ADS client.
func adsAddress(c *xdsconf.Cluster) (string, error) {
	if len(c.Endpoints) != 1 {
		return "", fmt.Errorf("cluster %q: the ADS cluster needs exactly one endpoint, has %d", c.Name, len(c.Endpoints))
	}
	e := c.Endpoints[0]
	if e.Network == "unix" {
		return "unix://" + e.Path, nil
	}
	return e.Addr(), nil
}

// apply is the ADS handler: it builds the next snapshot, hands it to the data plane and returns
// the error that NACKs the update (nil = ACK).
func (d *Double) apply(typeURL string, res map[string]*anypb.Any) error {
	d.applyMu.Lock()
	defer d.applyMu.Unlock()
	next, err := d.dp.Snapshot().Apply(typeURL, res)
	// new listeners are bound with the listener update that adds them: a port in use NACKs it
	if uerr := d.dp.Update(next, typeURL == xdsconf.ListenerType); uerr != nil {
		err = errors.Join(err, uerr)
	}
	d.mu.Lock()
	d.received[typeURL] = true
	d.versions[typeURL]++
	d.mu.Unlock()
	d.checkLive()
	return err
}

// checkLive goes LIVE once clusters and listeners have been received and every listener is warm.
func (d *Double) checkLive() {
	d.mu.Lock()
	ready := (!d.boot.CDS || d.received[xdsconf.ClusterType]) && (!d.boot.LDS || d.received[xdsconf.ListenerType])
	d.mu.Unlock()
	if !ready {
		return
	}
	snap := d.dp.Snapshot()
	for _, l := range snap.Listeners {
		if !l.Warm(snap) {
			return
		}
	}
	d.setLive()
}

func (d *Double) setLive() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.live {
		d.live = true
		d.log.Info("server LIVE")
	}
}

// Live reports whether /ready answers LIVE.
func (d *Double) Live() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.live
}

// Snapshot is the active configuration.
func (d *Double) Snapshot() *xdsconf.Snapshot { return d.dp.Snapshot() }

// Listening returns the bound listeners (name → address).
func (d *Double) Listening() map[string]string { return d.dp.Listening() }

// Quit is closed when /quitquitquit is called.
func (d *Double) Quit() <-chan struct{} { return d.quit }

// Close stops everything.
func (d *Double) Close() {
	d.once.Do(func() {
		d.cancel()
		<-d.done
		if d.admin != nil {
			_ = d.admin.Close()
		}
		d.dp.Close()
	})
}
