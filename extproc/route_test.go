package extproc

import (
	"context"
	"testing"

	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/tap"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
)

// TestTapRoute: the route the tap reads from a stream's metadata is the one read from the handler's
// incoming metadata, fields absent included, and a stream's context yields it.
func TestTapRoute(t *testing.T) {
	for _, route := range []extproctest.Route{
		{Gateway: "ns/gw", Route: "ns/r/rule/0", Policy: "p", MCP: contract.TransportStreamableHTTP, Backend: "ns/b", Target: "t"},
		{Gateway: "ns/gw", Route: "ns/r/rule/1"},
		{},
	} {
		md := route.MD()
		want := routeOf(grpcmd.NewIncomingContext(context.Background(), md))
		ctx, err := tapRoute(context.Background(), &tap.Info{FullMethodName: "/m", Header: md})
		if err != nil {
			t.Fatal(err)
		}
		if got := routeOf(ctx); got != want {
			t.Errorf("tapped route %+v, incoming %+v", got, want)
		}
		if route.Route != "" && want.route != route.Route {
			t.Errorf("route %+v read as %+v", route, want)
		}
	}
}
