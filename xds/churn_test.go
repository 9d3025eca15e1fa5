package xds_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/status"

	"github.com/mcpgate/mcpgate/xds"
	"github.com/mcpgate/mcpgate/xds/internal/xdstest"
)

// TestNACKTypeLabelsBounded: a client that NACKs responses of type URLs it makes up (any client
// can claim any, over plaintext) does not make a series of mcpgate_xds_nacks_total for each: the
// type URLs the server does not serve count as "other".
func TestNACKTypeLabelsBounded(t *testing.T) {
	srv, addr, _ := start(t, gateways(xdstest.Gateway(gw, 9000, "/")))
	reg := prometheus.NewRegistry()
	if err := srv.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	const n = 100
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	d, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, addr)).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: fmt.Sprintf("type.googleapis.com/made.Up%d", i), ResponseNonce: "1",
			ErrorDetail: &status.Status{Code: 3, Message: "rejected"}}
		if i == 0 {
			r.Node = &corev3.Node{Id: "hostile", Cluster: gw}
		}
		if err := d.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	// series returns the series of mcpgate_xds_nacks_total and the NACKs they count.
	series := func() (int, float64) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "mcpgate_xds_nacks_total" {
				sum := 0.0
				for _, m := range mf.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
				return len(mf.GetMetric()), sum
			}
		}
		t.Fatal("no metric mcpgate_xds_nacks_total")
		return 0, 0
	}
	for {
		got, nacks := series()
		if nacks == n {
			// The 5 types served (at 0), and other.
			if want := 6; got != want {
				t.Errorf("mcpgate_xds_nacks_total has %d series after NACKs of %d made-up type URLs, want %d", got, n, want)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("mcpgate_xds_nacks_total counts %v NACKs, want %d", nacks, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := metric(t, reg, "mcpgate_xds_nacks_total", "other"); v != n {
		t.Errorf("mcpgate_xds_nacks_total{type_url=\"other\"} = %v, want %d", v, n)
	}
}

// TestUnservedGroupsForgotten: clients of node groups that are not served (a typo, an Envoy
// without --service-cluster named by its pod, a client making groups up) come and go; once they
// are gone, the snapshot cache keeps no state of their groups, which would otherwise grow with
// every group ever claimed. A client still waiting for its group meanwhile gets it when it is
// served.
func TestUnservedGroupsForgotten(t *testing.T) {
	srv, addr, _ := start(t, gateways(xdstest.Gateway(gw, 9000, "/")))
	late := newDelta(t, addr, &corev3.Node{Id: "late", Cluster: "ns/late"})
	late.subscribe(lds)
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, addr))
	const n = 50
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		d, err := ads.DeltaAggregatedResources(ctx)
		if err == nil {
			err = d.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: fmt.Sprintf("pod-%d", i)}, TypeUrl: lds})
		}
		s, err2 := ads.StreamAggregatedResources(ctx)
		if err2 == nil {
			err2 = s.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "x", Cluster: fmt.Sprintf("ns/typo-%d", i)}, TypeUrl: cds})
		}
		if err != nil || err2 != nil {
			t.Fatalf("client %d: delta %v, sotw %v", i, err, err2)
		}
		// The requests reach the server (a watch is made) before the streams end.
		for !slices.Contains(xds.CachedGroups(srv), fmt.Sprintf("ns/typo-%d", i)) || !slices.Contains(xds.CachedGroups(srv), fmt.Sprintf("pod-%d", i)) {
			if ctx.Err() != nil {
				t.Fatalf("client %d: no watch of its groups: %q", i, xds.CachedGroups(srv))
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		got := xds.CachedGroups(srv)
		if slices.Equal(got, []string{"ns/late"}) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the cache keeps the node groups %q, want only ns/late's (its client waits): not those of clients gone", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	update(t, srv, gateways(xdstest.Gateway(gw, 9000, "/"), xdstest.Gateway("ns/late", 9001, "/")))
	equal(t, "late group", deltaNames(t, late.next(lds)), []string{xdstest.ListenerName("ns/late")})
	// A client of a served group that connects after gets it.
	c := newDelta(t, addr, &corev3.Node{Id: "envoy", Cluster: gw})
	c.subscribe(lds)
	equal(t, "served group", deltaNames(t, c.next(lds)), []string{xdstest.ListenerName(gw)})
}

// TestRemovedGroupsForgotten: a removed Gateway's group keeps its empty snapshot while a client
// of it is connected (the client gets the removal, whenever it asks) and for a grace period after
// the removal (a client reconnecting then gets it too), and the cache forgets it after both:
// removed Gateways would otherwise leave a snapshot each for ever.
func TestRemovedGroupsForgotten(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv, addr, _ := start(t, gateways(xdstest.Gateway(gw, 9000, "/"), xdstest.Gateway("ns/old", 9001, "/"), xdstest.Gateway("ns/unwatched", 9002, "/")))
	xds.SetClock(srv, clock)
	t.Run("client of the removed group", func(t *testing.T) {
		c := newDelta(t, addr, &corev3.Node{Id: "envoy", Cluster: "ns/old"})
		c.subscribe(lds)
		c.ack(c.next(lds))
		update(t, srv, gateways(xdstest.Gateway(gw, 9000, "/")))
		r := c.next(lds)
		if len(r.GetRemovedResources()) != 1 {
			t.Errorf("listeners after the removal: removed %q, want the group's listener", r.GetRemovedResources())
		}
		c.ack(r)
		// connected, between watches: a request it makes now still finds the empty snapshot
		if !xds.HasSnapshot(srv, "ns/old") {
			t.Error("the removed group's empty snapshot is gone while its client is connected")
		}
		// within the grace: a client of it reconnecting would find the removal
		if !xds.HasSnapshot(srv, "ns/unwatched") {
			t.Error("the removed group no client is connected to is gone within the grace period")
		}
	}) // the client's stream ends with its test
	mu.Lock()
	now = now.Add(xds.RemovedGrace)
	mu.Unlock()
	update(t, srv, gateways(xdstest.Gateway(gw, 9000, "/"), xdstest.Gateway("ns/new", 9003, "/")))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for _, g := range []string{"ns/old", "ns/unwatched"} {
		// forgotten by the update, or when the client's stream end reaches the server
		for xds.HasSnapshot(srv, g) || slices.Contains(xds.CachedGroups(srv), g) {
			if ctx.Err() != nil {
				t.Fatalf("the removed group %s is kept after the grace with no client: groups %q", g, xds.CachedGroups(srv))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !xds.HasSnapshot(srv, gw) || !xds.HasSnapshot(srv, "ns/new") {
		t.Error("a served group's snapshot is gone")
	}
}
