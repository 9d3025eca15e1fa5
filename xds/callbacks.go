package xds

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	grpcstatus "google.golang.org/grpc/status"
)

// callbacks logs the life of xDS streams: connections, subscriptions, ACKs and NACKs, and,
// with an identity bound, refuses the streams of peers that may not have the configuration of
// the node group they ask for. They run on the stream's goroutine and take one short lock.
type callbacks struct {
	log *slog.Logger
	m   *metrics

	mu sync.Mutex
	// identity, when set, binds node groups to client certificates (Server.BindIdentity).
	identity Identity
	// streams is keyed by protocol ("sotw" or "delta") and stream id: the two servers count
	// their streams separately.
	streams map[streamKey]*stream
	// served are the node groups of the last push (nil before the first): a client of another
	// group connects to wait for a configuration that may never come, which is logged.
	served map[string]bool
	// onClosed, when set, runs after a stream ended (Server.forget).
	onClosed func()
}

// setServed records the node groups a push served.
func (c *callbacks) setServed(groups []string) {
	served := make(map[string]bool, len(groups))
	for _, g := range groups {
		served[g] = true
	}
	c.mu.Lock()
	c.served = served
	c.mu.Unlock()
}

type streamKey struct {
	api string
	id  int64
}

// stream is what the callbacks remember of one stream.
type stream struct {
	peer string
	// id is the peer's identity, when an identity is bound.
	id   *peerID
	node *corev3.Node
	// sent is type URL -> the last response sent, to name the version an ACK or NACK is about.
	sent map[string]sent
	// types are the type URLs the stream asked for.
	types map[string]bool
	// rejected is type URL -> the last response of that type the client rejected, until it
	// accepts one.
	rejected map[string]rejection
}

// rejection is a response a client rejected: its version and the client's message.
type rejection struct{ version, msg string }

// maxSotwTypes is how many type URLs one SotW ADS stream may ask for: go-control-plane buffers
// that many responses per stream (one per type) and sends into the buffer while it holds its
// cache's lock. A stream asking for more could fill it, and the next update would wait for ever
// with the lock held: no node group would get an update again.
const maxSotwTypes = int(types.UnknownType)

type sent struct{ nonce, version string }

func newCallbacks(logger *slog.Logger, m *metrics) *callbacks {
	return &callbacks{log: logger, m: m, streams: map[streamKey]*stream{}}
}

// open registers a stream. With an identity bound, it refuses a peer without a verified client
// certificate or whose certificate names no group.
func (c *callbacks) open(ctx context.Context, api string, id int64) error {
	st := &stream{sent: map[string]sent{}, types: map[string]bool{}, rejected: map[string]rejection{}}
	if p, ok := peer.FromContext(ctx); ok {
		st.peer = p.Addr.String()
	}
	c.mu.Lock()
	identity := c.identity
	c.mu.Unlock()
	var refused *refusal
	if identity != nil {
		pid, r := identify(ctx, identity)
		st.id, refused = &pid, r
	}
	c.mu.Lock()
	c.streams[streamKey{api, id}] = st
	c.mu.Unlock()
	c.m.streams.WithLabelValues(api).Inc()
	if refused != nil {
		return c.refuse(refused, "api", api, "stream", id)
	}
	return nil
}

// authorize refuses a request of a stream bound to an identity whose node group is not the
// identity's. A request without a node is the stream's first node's (Envoy sends it once);
// with none at all, the group claimed is "", which no certificate is bound to.
func (c *callbacks) authorize(api string, id int64, node *corev3.Node) error {
	c.mu.Lock()
	st := c.streams[streamKey{api, id}]
	if st != nil && node == nil {
		node = st.node
	}
	c.mu.Unlock()
	if st == nil || st.id == nil {
		return nil
	}
	if r := st.id.check(GroupOf(node)); r != nil {
		return c.refuse(r, "api", api, "stream", id, "node", node.GetId())
	}
	return nil
}

// refuse logs a refusal and returns its error.
func (c *callbacks) refuse(r *refusal, attrs ...any) error {
	c.log.Warn("xDS client refused", append(attrs, r.attrs...)...)
	return r.err
}

// connectedGroups returns the node groups of the open streams that have named their node.
func (c *callbacks) connectedGroups() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	groups := make(map[string]bool, len(c.streams))
	for _, st := range c.streams {
		if st.node != nil {
			groups[GroupOf(st.node)] = true
		}
	}
	return groups
}

func (c *callbacks) closed(api string, id int64, node *corev3.Node) {
	c.mu.Lock()
	st := c.streams[streamKey{api, id}]
	delete(c.streams, streamKey{api, id})
	c.mu.Unlock()
	c.m.streams.WithLabelValues(api).Dec()
	if node == nil && st != nil {
		node = st.node
	}
	if node != nil {
		c.log.Info("xDS client disconnected", "api", api, "stream", id, "node", node.GetId(), "group", GroupOf(node))
	}
	if c.onClosed != nil {
		c.onClosed()
	}
}

// request logs a request: a subscription when it answers no response, else an ACK or a NACK of
// the response whose nonce it carries; an ACK that accepts a type the client rejected before is
// logged at info level. It returns the version of that response, if known, and how many type
// URLs the stream has asked for. accepted is the version a SotW request says the client holds
// ("" for Delta): a SotW request that carries a nonce without an error but not that response's
// version (a subscription change after a NACK) does not accept it.
func (c *callbacks) request(api string, id int64, node *corev3.Node, typeURL, nonce, accepted string, names []string, nack *status.Status) (string, bool, int) {
	c.mu.Lock()
	st := c.streams[streamKey{api, id}]
	first := false
	var about sent
	var recovered *rejection // the rejection an ACK ends
	ntypes := 0
	if st != nil {
		if st.node == nil && node != nil {
			st.node, first = node, true
		}
		if node == nil {
			node = st.node
		}
		about = st.sent[typeURL]
		st.types[typeURL] = true
		ntypes = len(st.types)
	}
	unserved := first && c.served != nil && !c.served[GroupOf(node)]
	version, known := about.version, nonce != "" && about.nonce == nonce
	if !known {
		version = fmt.Sprintf("unknown (nonce %q)", nonce)
	}
	if st != nil {
		r, wasRejected := st.rejected[typeURL]
		switch {
		case nack != nil:
			st.rejected[typeURL] = rejection{version: version, msg: nack.GetMessage()}
		case wasRejected && known && (api == "delta" || accepted == about.version):
			delete(st.rejected, typeURL)
			recovered = &r
		}
	}
	c.mu.Unlock()
	attrs := []any{"api", api, "stream", id, "node", node.GetId(), "group", GroupOf(node), "type", typeURL}
	if first {
		c.log.Info("xDS client connected", "api", api, "stream", id, "node", node.GetId(), "group", GroupOf(node), "peer", st.peer)
	}
	if unserved {
		// A typo in `mcpgate bootstrap --gateway` or Envoy's --service-cluster, or a Gateway
		// that is not (yet) accepted: without this line the client just waits, configured with
		// nothing.
		c.log.Warn("xDS client of a node group that is not served: it gets no configuration until a Gateway of that name is served (check the bootstrap's node.cluster, or Envoy's --service-cluster, and the Gateway's status)",
			"api", api, "stream", id, "node", node.GetId(), "group", GroupOf(node))
	}
	switch {
	case nonce == "":
		c.log.Debug("xDS subscribe", append(attrs, "resources", names)...)
	case nack != nil:
		attrs = append(attrs, "version", version, "error", nack.GetMessage(), "code", nack.GetCode())
		if api == "sotw" {
			attrs = append(attrs, "accepted_version", accepted)
		}
		c.m.nacks.WithLabelValues(nackLabel(typeURL)).Inc()
		// an error: the client runs without that configuration (or with an older one)
		c.log.Error("xDS NACK: the client rejected the configuration", attrs...)
	case recovered != nil:
		// the end of the error above: one line, not one per ACK
		c.log.Info("xDS ACK after a NACK: the client accepted the configuration",
			append(attrs, "version", version, "rejected_version", recovered.version, "rejected_error", recovered.msg)...)
	default:
		c.log.Debug("xDS ACK", append(attrs, "version", version)...)
	}
	return about.version, known, ntypes
}

// rejections lists, for every open stream whose client rejected the last response of a type,
// "node NODE: TYPE: message", sorted.
func (c *callbacks) rejections() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, st := range c.streams {
		for typeURL, r := range st.rejected {
			out = append(out, fmt.Sprintf("node %s: %s: %s", st.node.GetId(), typeURL, r.msg))
		}
	}
	slices.Sort(out)
	return out
}

func (c *callbacks) response(api string, id int64, typeURL, nonce, version string) {
	c.mu.Lock()
	if st := c.streams[streamKey{api, id}]; st != nil {
		st.sent[typeURL] = sent{nonce: nonce, version: version}
	}
	c.mu.Unlock()
}

// OnStreamOpen implements the SotW callbacks.
func (c *callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.open(ctx, "sotw", id)
}

// OnStreamClosed implements the SotW callbacks.
func (c *callbacks) OnStreamClosed(id int64, node *corev3.Node) { c.closed("sotw", id, node) }

// OnStreamRequest implements the SotW callbacks. go-control-plane's cache answers a request at
// once when its version differs from the current one, else waits for the next version. Two
// requests need their version changed before the cache sees it:
//
//   - The first request of a type on a stream (no nonce) carries the version the client holds,
//     which another server gave it: this one after a restart (counting from 1 again) or another
//     replica (counting on its own). The same version string may name other content here, so
//     the request is answered at once, as one without a version.
//   - A NACK carries the last version the client accepted, which would make the cache answer
//     at once with the version just rejected, rejected again, in a loop. Its version is set to
//     the rejected one: the client waits for the next.
//
// A stream that asks for more than maxSotwTypes type URLs is ended, and so is one whose node
// group is not its client certificate's (when an identity is bound).
func (c *callbacks) OnStreamRequest(id int64, r *discoveryv3.DiscoveryRequest) error {
	if err := c.authorize("sotw", id, r.GetNode()); err != nil {
		return err
	}
	rejected, known, ntypes := c.request("sotw", id, r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), r.GetVersionInfo(), r.GetResourceNames(), r.GetErrorDetail())
	if ntypes > maxSotwTypes {
		c.log.Warn("xDS stream refused: too many resource types", "api", "sotw", "stream", id, "node", r.GetNode().GetId(), "type", r.GetTypeUrl())
		return grpcstatus.Errorf(codes.ResourceExhausted, "a SotW ADS stream may ask for at most %d resource types; %s is one more", maxSotwTypes, r.GetTypeUrl())
	}
	switch {
	case r.GetResponseNonce() == "":
		r.VersionInfo = ""
	case r.GetErrorDetail() != nil && known:
		r.VersionInfo = rejected
	}
	return nil
}

// OnStreamResponse implements the SotW callbacks.
func (c *callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, r *discoveryv3.DiscoveryResponse) {
	c.response("sotw", id, r.GetTypeUrl(), r.GetNonce(), r.GetVersionInfo())
}

// OnDeltaStreamOpen implements the Delta callbacks.
func (c *callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.open(ctx, "delta", id)
}

// OnDeltaStreamClosed implements the Delta callbacks.
func (c *callbacks) OnDeltaStreamClosed(id int64, node *corev3.Node) { c.closed("delta", id, node) }

// OnStreamDeltaRequest implements the Delta callbacks. A stream whose node group is not its
// client certificate's (when an identity is bound) is ended.
func (c *callbacks) OnStreamDeltaRequest(id int64, r *discoveryv3.DeltaDiscoveryRequest) error {
	if err := c.authorize("delta", id, r.GetNode()); err != nil {
		return err
	}
	// Delta needs no limit of types: go-control-plane empties the stream's buffer before it
	// takes each request, and pushes only the types that changed, which a snapshot holds.
	c.request("delta", id, r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), "", r.GetResourceNamesSubscribe(), r.GetErrorDetail())
	return nil
}

// OnStreamDeltaResponse implements the Delta callbacks.
func (c *callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, r *discoveryv3.DeltaDiscoveryResponse) {
	c.response("delta", id, r.GetTypeUrl(), r.GetNonce(), r.GetSystemVersionInfo())
}

// OnFetchRequest implements the REST callbacks. REST over HTTP is not served, but the unary
// Fetch methods of the per-type gRPC services (FetchListeners, ...) are: with an identity bound,
// a Fetch is refused as a stream would be.
func (c *callbacks) OnFetchRequest(ctx context.Context, r *discoveryv3.DiscoveryRequest) error {
	c.mu.Lock()
	identity := c.identity
	c.mu.Unlock()
	if identity == nil {
		return nil
	}
	pid, refused := identify(ctx, identity)
	if refused == nil {
		refused = pid.check(GroupOf(r.GetNode()))
	}
	if refused != nil {
		return c.refuse(refused, "api", "fetch", "node", r.GetNode().GetId(), "type", r.GetTypeUrl())
	}
	return nil
}

// OnFetchResponse implements the REST callbacks; REST is not served.
func (c *callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {
}

// cacheLogger routes go-control-plane's logs to slog. Its Info is chatty (a line per watch), so
// it goes to Debug.
type cacheLogger struct{ log *slog.Logger }

func (l cacheLogger) logf(level slog.Level, format string, args []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l cacheLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args) }
func (l cacheLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args) }
func (l cacheLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args) }
func (l cacheLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args) }
