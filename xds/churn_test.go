package xds_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/status"

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
