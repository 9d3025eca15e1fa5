// Package client is a small ADS client for any resource type: it subscribes to every resource
// of a list of type URLs (wildcard), keeps the current set of each type, hands it to a handler
// after every response, ACKs or NACKs what the handler says, and reconnects until its context
// ends. ext_proc uses it for mcpgate's policies; the Envoy test double for listeners, routes,
// clusters and endpoints.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/anypb"
)

// Handler receives the whole current set of one type (name -> resource) after each response of
// that type, including the first, empty or not. It returns nil to accept the set (ACK) or an
// error to reject it (NACK, with the error's text as error_detail). Like Envoy, a handler applies
// what it can of a rejected set: valid resources take effect, an invalid one keeps its last good
// version. The client holds the set as the server sent it either way, so that later Delta
// responses, which carry only changes, build on what the server believes the client has; over
// SotW a NACK still reports the version last accepted. The handler owns the map it is given; it
// is called from one goroutine at a time.
type Handler func(typeURL string, resources map[string]*anypb.Any) error

// Config says where to connect, as which node, and for what.
type Config struct {
	// Addr is the server: "HOST:PORT" or "unix:///PATH".
	Addr string
	// Node identifies the client; the server picks its snapshot by node.cluster (else node.id).
	Node *corev3.Node
	// TypeURLs are the types to subscribe to, each by wildcard.
	TypeURLs []string
	// Handler receives the sets.
	Handler Handler
	// SotW selects State-of-the-World ADS instead of Delta ADS.
	SotW bool
	// Logger logs connections, NACKs and reconnections; nil discards.
	Logger *slog.Logger
	// TLS, when set, makes the connection TLS with this configuration, for "HOST:PORT" and
	// "unix://" addresses alike; nil: plaintext. For mutual TLS with mcpgate's xDS server, set
	// Certificates (the client certificate the server binds the node group to), RootCAs and
	// ServerName (over a Unix socket gRPC would otherwise check the name "localhost").
	TLS *tls.Config
	// DialOptions replace the default (plaintext) options of the connection. They apply after
	// the message size limit, keepalive and TLS, which they may change.
	DialOptions []grpc.DialOption
	// MaxMessageBytes is the largest response accepted (default DefaultMaxMessageBytes). gRPC's
	// own default, 4 MiB, is below one RouteConfiguration of 10,000 routes or the policies of
	// 10,000 routes with JWT authentication; Envoy sets no limit.
	MaxMessageBytes int
	// Keepalive pings the server while the stream is idle, so that a server that vanished
	// without closing the connection (its node died) is noticed and another is dialed. Zero:
	// a ping every 30 s, 10 s to answer. gRPC pings at most every 10 s; the server takes no
	// more than one ping per 10 s (xds.GRPCServerOptions).
	Keepalive keepalive.ClientParameters
	// MinBackoff and MaxBackoff bound the wait between reconnections (default 100 ms and 10 s);
	// the wait doubles after each failed attempt and resets after a response.
	MinBackoff, MaxBackoff time.Duration
}

// DefaultMaxMessageBytes is the default of Config.MaxMessageBytes.
const DefaultMaxMessageBytes = 256 << 20

func (c *Config) check() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("no server address"))
	}
	if c.Node == nil || (c.Node.GetId() == "" && c.Node.GetCluster() == "") {
		errs = append(errs, errors.New("no node id or cluster"))
	}
	if len(c.TypeURLs) == 0 {
		errs = append(errs, errors.New("no type URL"))
	}
	if c.Handler == nil {
		errs = append(errs, errors.New("no handler"))
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(10*time.Second, c.MinBackoff)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Keepalive.Time <= 0 {
		c.Keepalive.Time = 30 * time.Second
	}
	if c.Keepalive.Timeout <= 0 {
		c.Keepalive.Timeout = 10 * time.Second
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.DialOptions == nil && c.TLS == nil {
		c.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return errors.Join(errs...)
}

// state is what the client holds, kept across reconnections.
type state struct {
	// sets is type URL -> name -> resource, as received over Delta (rejected or not).
	sets map[string]map[string]*anypb.Any
	// versions is type URL -> name -> version, for Delta's initial_resource_versions.
	versions map[string]map[string]string
	// accepted is type URL -> the last version accepted over SotW.
	accepted map[string]string
}

// Run subscribes and serves the handler until ctx ends, then returns nil. A broken stream is
// opened again after a backoff and resynchronized: over Delta the server is told the versions
// the client holds, so it sends only what changed and what was removed meanwhile. Run returns an
// error at once only when cfg is incomplete.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.check(); err != nil {
		return fmt.Errorf("xds client: %w", err)
	}
	opts := []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.MaxMessageBytes)),
		grpc.WithKeepaliveParams(cfg.Keepalive),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg.TLS.Clone())))
	}
	opts = append(opts, cfg.DialOptions...)
	conn, err := grpc.NewClient(cfg.Addr, opts...)
	if err != nil {
		return fmt.Errorf("xds client: %s: %w", cfg.Addr, err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	st := &state{sets: map[string]map[string]*anypb.Any{}, versions: map[string]map[string]string{}, accepted: map[string]string{}}
	api := "delta"
	if cfg.SotW {
		api = "sotw"
	}
	log := cfg.Logger.With("xds_server", cfg.Addr, "api", api, "node", cfg.Node.GetId(), "cluster", cfg.Node.GetCluster())
	open := openDelta
	if cfg.SotW {
		open = openSotw
	}
	wait := cfg.MinBackoff
	for {
		got, err := session(ctx, open, ads, cfg, st, log)
		if ctx.Err() != nil {
			return nil
		}
		if got {
			wait = cfg.MinBackoff
		}
		sleep := wait/2 + rand.N(wait/2+1)
		log.Warn("xDS stream ended; reconnecting", "error", err, "in", sleep)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(sleep):
		}
		wait = min(2*wait, cfg.MaxBackoff)
	}
}

// nack is the error_detail of a rejection.
func nack(err error) *status.Status {
	return &status.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
}

// stream is one ADS stream, SotW or Delta, with its initial requests sent.
type stream interface {
	// recv waits for the next response.
	recv() (response, error)
	// reply ACKs r, or NACKs it when err is not nil.
	reply(r response, err error) error
}

// response is a response applied to the accepted state, not yet committed.
type response struct {
	typeURL, version, nonce string
	// set is the type's set after the response, or err why the response cannot be applied.
	set map[string]*anypb.Any
	err error
	// commit makes set the client's state; accepted says whether the handler accepted it.
	commit func(accepted bool)
}

// session runs one stream until it breaks. It reports whether a response arrived.
func session(ctx context.Context, open func(context.Context, discoveryv3.AggregatedDiscoveryServiceClient, Config, *state) (stream, error),
	ads discoveryv3.AggregatedDiscoveryServiceClient, cfg Config, st *state, log *slog.Logger) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := open(ctx, ads, cfg, st)
	if err != nil {
		return false, err
	}
	got := false
	for {
		r, err := s.recv()
		if err != nil {
			return got, err
		}
		if !got {
			log.Info("xDS stream up")
			got = true
		}
		err = r.err
		if err == nil {
			err = cfg.Handler(r.typeURL, maps.Clone(r.set))
			r.commit(err == nil)
		}
		if err != nil {
			log.Warn("rejecting xDS resources (NACK)", "type", r.typeURL, "version", r.version, "error", err)
		} else {
			log.Debug("accepted xDS resources", "type", r.typeURL, "version", r.version, "resources", len(r.set))
		}
		if err := s.reply(r, err); err != nil {
			return got, err
		}
	}
}

// deltaStream is a Delta ADS stream.
type deltaStream struct {
	s     discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	types []string
	st    *state
}

// openDelta opens a Delta stream and subscribes to every type by wildcard, telling the server
// the versions the client holds.
func openDelta(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient, cfg Config, st *state) (stream, error) {
	s, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	for i, t := range cfg.TypeURLs {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, InitialResourceVersions: st.versions[t]}
		if i == 0 {
			req.Node = cfg.Node
		}
		if err := s.Send(req); err != nil {
			return nil, err
		}
	}
	return &deltaStream{s: s, types: cfg.TypeURLs, st: st}, nil
}

func (d *deltaStream) recv() (response, error) {
	resp, err := d.s.Recv()
	if err != nil {
		return response{}, err
	}
	t := resp.GetTypeUrl()
	next, versions, err := applyDelta(d.types, d.st, resp)
	return response{
		typeURL: t, version: resp.GetSystemVersionInfo(), nonce: resp.GetNonce(), set: next, err: err,
		// Envoy records the versions of a rejected Delta response's resources too: the server
		// does not send them again, and a reconnection tells it they are held.
		commit: func(bool) { d.st.sets[t], d.st.versions[t] = next, versions },
	}, nil
}

func (d *deltaStream) reply(r response, err error) error {
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.typeURL, ResponseNonce: r.nonce}
	if err != nil {
		req.ErrorDetail = nack(err)
	}
	return d.s.Send(req)
}

// applyDelta returns the set of the response's type and its versions after the response.
func applyDelta(types []string, st *state, resp *discoveryv3.DeltaDiscoveryResponse) (map[string]*anypb.Any, map[string]string, error) {
	t := resp.GetTypeUrl()
	if !slices.Contains(types, t) {
		return nil, nil, fmt.Errorf("type %s was not subscribed", t)
	}
	next, versions := maps.Clone(st.sets[t]), maps.Clone(st.versions[t])
	if next == nil {
		next, versions = map[string]*anypb.Any{}, map[string]string{}
	}
	for _, r := range resp.GetResources() {
		if got := r.GetResource().GetTypeUrl(); got != t {
			return nil, nil, fmt.Errorf("resource %q: type %q in a %s response", r.GetName(), got, t)
		}
		next[r.GetName()], versions[r.GetName()] = r.GetResource(), r.GetVersion()
	}
	for _, name := range resp.GetRemovedResources() {
		delete(next, name)
		delete(versions, name)
	}
	return next, versions, nil
}

// sotwStream is a State-of-the-World ADS stream.
type sotwStream struct {
	s     discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	types []string
	st    *state
}

// openSotw opens a SotW stream and subscribes to every type by wildcard, with the versions the
// client has accepted.
func openSotw(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient, cfg Config, st *state) (stream, error) {
	s, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	for i, t := range cfg.TypeURLs {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: st.accepted[t]}
		if i == 0 {
			req.Node = cfg.Node
		}
		if err := s.Send(req); err != nil {
			return nil, err
		}
	}
	return &sotwStream{s: s, types: cfg.TypeURLs, st: st}, nil
}

func (o *sotwStream) recv() (response, error) {
	resp, err := o.s.Recv()
	if err != nil {
		return response{}, err
	}
	t, v := resp.GetTypeUrl(), resp.GetVersionInfo()
	next, err := sotwSet(o.types, resp)
	return response{
		typeURL: t, version: v, nonce: resp.GetNonce(), set: next, err: err,
		// each SotW response is the whole set: only the version to report is kept
		commit: func(accepted bool) {
			if accepted {
				o.st.accepted[t] = v
			}
		},
	}, nil
}

// reply sends the version last accepted: the response's after an ACK, the previous after a NACK.
func (o *sotwStream) reply(r response, err error) error {
	req := &discoveryv3.DiscoveryRequest{TypeUrl: r.typeURL, VersionInfo: o.st.accepted[r.typeURL], ResponseNonce: r.nonce}
	if err != nil {
		req.ErrorDetail = nack(err)
	}
	return o.s.Send(req)
}

// sotwSet names the resources of a SotW response, which carries them without their names.
func sotwSet(types []string, resp *discoveryv3.DiscoveryResponse) (map[string]*anypb.Any, error) {
	t := resp.GetTypeUrl()
	if !slices.Contains(types, t) {
		return nil, fmt.Errorf("type %s was not subscribed", t)
	}
	set := make(map[string]*anypb.Any, len(resp.GetResources()))
	for i, a := range resp.GetResources() {
		if a.GetTypeUrl() != t {
			return nil, fmt.Errorf("resources[%d]: type %q in a %s response", i, a.GetTypeUrl(), t)
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("resources[%d]: %w", i, err)
		}
		name := cachev3.GetResourceName(m)
		if name == "" {
			return nil, fmt.Errorf("resources[%d]: no name", i)
		}
		if _, dup := set[name]; dup {
			return nil, fmt.Errorf("resources[%d]: name %q repeated", i, name)
		}
		set[name] = a
	}
	return set, nil
}
