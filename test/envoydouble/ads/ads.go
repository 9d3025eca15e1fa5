// Package ads is the envoydouble's Delta ADS client: one aggregated gRPC stream
// (envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources) to the xDS
// cluster of the bootstrap, wildcard subscriptions to the given type URLs, ACK when the handler
// accepts an update and NACK (error_detail) when it refuses, reconnecting with the versions it
// holds (initial_resource_versions) when the stream breaks.
//
// Difference from Envoy, on purpose: Envoy subscribes to RouteConfigurations and
// ClusterLoadAssignments by name (those its listeners and clusters reference); this client
// subscribes to every type as a wildcard, so it receives every resource of the node's group.
package ads

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
)

// Handler receives the full current set of resources of one type after each update. An error
// NACKs the update with the error's text.
type Handler func(typeURL string, resources map[string]*anypb.Any) error

// Client is a Delta ADS client.
type Client struct {
	Conn    grpc.ClientConnInterface
	Node    *corev3.Node
	Types   []string
	Handler Handler
	Log     *slog.Logger
	// Backoff is the delay before reconnecting (default 500 ms).
	Backoff time.Duration

	state map[string]map[string]entry // type URL -> name -> resource
}

type entry struct {
	version string
	res     *anypb.Any
}

// Run keeps a stream open until ctx ends, reconnecting after failures.
func (c *Client) Run(ctx context.Context) {
	if c.state == nil {
		c.state = map[string]map[string]entry{}
	}
	backoff := c.Backoff
	if backoff == 0 {
		backoff = 500 * time.Millisecond
	}
	for ctx.Err() == nil {
		err := c.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		c.Log.Warn("ADS stream ended, reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

func (c *Client) stream(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(c.Conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open ADS stream: %w", err)
	}
	for _, t := range c.Types {
		versions := map[string]string{}
		for name, e := range c.state[t] {
			versions[name] = e.version
		}
		req := &discoveryv3.DeltaDiscoveryRequest{Node: c.Node, TypeUrl: t, InitialResourceVersions: versions}
		if err := st.Send(req); err != nil {
			return fmt.Errorf("subscribe %s: %w", t, err)
		}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		t := resp.GetTypeUrl()
		next := maps.Clone(c.state[t])
		if next == nil {
			next = map[string]entry{}
		}
		for _, name := range resp.GetRemovedResources() {
			delete(next, name)
		}
		for _, r := range resp.GetResources() {
			if r.GetResource() == nil {
				continue
			}
			next[r.GetName()] = entry{version: r.GetVersion(), res: r.GetResource()}
		}
		c.state[t] = next
		all := make(map[string]*anypb.Any, len(next))
		for name, e := range next {
			all[name] = e.res
		}
		ack := &discoveryv3.DeltaDiscoveryRequest{Node: c.Node, TypeUrl: t, ResponseNonce: resp.GetNonce()}
		if herr := c.Handler(t, all); herr != nil {
			c.Log.Error("NACK", "type", t, "version", resp.GetSystemVersionInfo(), "err", herr)
			ack.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: herr.Error()}
		} else {
			c.Log.Info("ACK", "type", t, "version", resp.GetSystemVersionInfo(), "resources", len(all))
		}
		if err := st.Send(ack); err != nil {
			return fmt.Errorf("ack %s: %w", t, err)
		}
	}
}
