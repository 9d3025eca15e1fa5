package xds_test

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The clients below speak ADS with go-control-plane's generated types only, as Envoy does, so
// that the server is tested independently of package client.

// waitFor bounds every receive: a test that gets no answer fails instead of hanging.
const waitFor = 10 * time.Second

// dial connects to addr with opts, by default in plaintext.
func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// adsClient is an ADS stream, SotW or Delta, whose responses are sorted by type on arrival.
type adsClient[Req interface{ SetNode(*corev3.Node) }, Resp interface{ GetTypeUrl() string }] struct {
	t       *testing.T
	stream  interface{ Send(Req) error }
	node    *corev3.Node
	in      chan Resp
	pending map[string][]Resp
	sent    bool
	// err is why the stream ended, set before in is closed.
	err error
}

func newADS[Req interface{ SetNode(*corev3.Node) }, Resp interface{ GetTypeUrl() string }](
	t *testing.T, node *corev3.Node, s interface {
		Send(Req) error
		Recv() (Resp, error)
	}) *adsClient[Req, Resp] {
	c := &adsClient[Req, Resp]{t: t, stream: s, node: node, in: make(chan Resp, 64), pending: map[string][]Resp{}}
	go func() {
		defer close(c.in)
		for {
			r, err := s.Recv()
			if err != nil {
				c.err = err
				return
			}
			c.in <- r
		}
	}()
	return c
}

// send sends a request; the node goes on the first one only, as Envoy does.
func (c *adsClient[Req, Resp]) send(r Req) {
	c.t.Helper()
	if !c.sent {
		r.SetNode(c.node)
		c.sent = true
	}
	if err := c.stream.Send(r); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next response of typeURL.
func (c *adsClient[Req, Resp]) next(typeURL string) Resp {
	c.t.Helper()
	timeout := time.After(waitFor)
	for len(c.pending[typeURL]) == 0 {
		select {
		case r, ok := <-c.in:
			if !ok {
				c.t.Fatalf("stream ended waiting for %s", typeURL)
			}
			c.pending[r.GetTypeUrl()] = append(c.pending[r.GetTypeUrl()], r)
		case <-timeout:
			c.t.Fatalf("no %s response", typeURL)
		}
	}
	r := c.pending[typeURL][0]
	c.pending[typeURL] = c.pending[typeURL][1:]
	return r
}

// end waits for the stream to end and returns why. A response meanwhile fails the test.
func (c *adsClient[Req, Resp]) end() error {
	c.t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case r, ok := <-c.in:
			if !ok {
				return c.err
			}
			c.t.Errorf("%s response on a stream that should end", r.GetTypeUrl())
		case <-timeout:
			c.t.Fatal("the stream did not end")
		}
	}
}

// sotwRequest and deltaRequest let adsClient set the node.
type sotwRequest struct{ *discoveryv3.DiscoveryRequest }

func (r sotwRequest) SetNode(n *corev3.Node) { r.Node = n }

type deltaRequest struct {
	*discoveryv3.DeltaDiscoveryRequest
}

func (r deltaRequest) SetNode(n *corev3.Node) { r.Node = n }

type sotwStream struct {
	discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
}

func (s sotwStream) Send(r sotwRequest) error {
	return s.AggregatedDiscoveryService_StreamAggregatedResourcesClient.Send(r.DiscoveryRequest)
}

type deltaStream struct {
	discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

func (s deltaStream) Send(r deltaRequest) error {
	return s.AggregatedDiscoveryService_DeltaAggregatedResourcesClient.Send(r.DeltaDiscoveryRequest)
}

// sotwClient speaks State of the World.
type sotwClient struct {
	*adsClient[sotwRequest, *discoveryv3.DiscoveryResponse]
}

func newSotw(t *testing.T, addr string, node *corev3.Node, opts ...grpc.DialOption) sotwClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, addr, opts...)).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return sotwClient{newADS[sotwRequest, *discoveryv3.DiscoveryResponse](t, node, sotwStream{s})}
}

// subscribe asks for typeURL: names, or every resource when names is empty.
func (c sotwClient) subscribe(typeURL string, names ...string) {
	c.send(sotwRequest{&discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names}})
}

// ack accepts r, keeping the subscription to names.
func (c sotwClient) ack(r *discoveryv3.DiscoveryResponse, names ...string) {
	c.send(sotwRequest{&discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce(), ResourceNames: names}})
}

// nack rejects r; accepted is the version the client keeps.
func (c sotwClient) nack(r *discoveryv3.DiscoveryResponse, accepted, msg string, names ...string) {
	c.send(sotwRequest{&discoveryv3.DiscoveryRequest{
		TypeUrl: r.GetTypeUrl(), VersionInfo: accepted, ResponseNonce: r.GetNonce(), ResourceNames: names,
		ErrorDetail: &status.Status{Code: 3, Message: msg},
	}})
}

// deltaClient speaks Delta.
type deltaClient struct {
	*adsClient[deltaRequest, *discoveryv3.DeltaDiscoveryResponse]
}

func newDelta(t *testing.T, addr string, node *corev3.Node, opts ...grpc.DialOption) deltaClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, addr, opts...)).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return deltaClient{newADS[deltaRequest, *discoveryv3.DeltaDiscoveryResponse](t, node, deltaStream{s})}
}

// subscribe subscribes to names of typeURL; no names is a wildcard subscription.
func (c deltaClient) subscribe(typeURL string, names ...string) {
	c.send(deltaRequest{&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: names}})
}

func (c deltaClient) ack(r *discoveryv3.DeltaDiscoveryResponse) {
	c.send(deltaRequest{&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}})
}

func (c deltaClient) nack(r *discoveryv3.DeltaDiscoveryResponse, msg string) {
	c.send(deltaRequest{&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce(), ErrorDetail: &status.Status{Code: 3, Message: msg}}})
}
