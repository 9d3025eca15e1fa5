package xds_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mcpgate/mcpgate/xds"
	"github.com/mcpgate/mcpgate/xds/internal/xdstest"
)

// other is a second gateway, whose configuration a client of gw must not get.
const other = "ns/other"

// serverName is the DNS name of the server's certificate.
const serverName = "xds.mcpgate.test"

// mtls is a server that requires client certificates of ca and binds them to node groups with
// xdstest.Identity, serving gw and other.
type mtls struct {
	ca   *xdstest.CA
	srv  *xds.Server
	addr string
	logs *xdstest.Logs
}

func startMTLS(t *testing.T) *mtls {
	t.Helper()
	ca := xdstest.NewCA(t)
	opt, err := xds.ServerTLS(&tls.Config{Certificates: []tls.Certificate{ca.Server(t, serverName).TLS}, ClientCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	logs := &xdstest.Logs{}
	srv := xds.New(logs.Logger())
	srv.BindIdentity(xdstest.Identity)
	update(t, srv, gateways(xdstest.Gateway(gw, 9000, "/"), xdstest.Gateway(other, 9001, "/")))
	return &mtls{ca: ca, srv: srv, addr: xdstest.Serve(t, srv, opt), logs: logs}
}

// as returns the dial option of a client presenting cert (none when nil) and trusting the CA.
func (m *mtls) as(cert *xdstest.Cert) grpc.DialOption {
	cfg := &tls.Config{RootCAs: m.ca.Pool, ServerName: serverName}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.TLS}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}

// client returns the dial option of a client with a certificate bound to group.
func (m *mtls) client(t *testing.T, group string) grpc.DialOption {
	cert := m.ca.Client(t, xdstest.GroupURI(group))
	return m.as(&cert)
}

// refused opens a stream, SotW or Delta, subscribes to listeners as node and returns the error
// that ended it; a response fails the test.
func refused(t *testing.T, sotw bool, addr string, node *corev3.Node, opt grpc.DialOption) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, addr, opt))
	var recv func() (any, error)
	var send func() error
	if sotw {
		s, err := ads.StreamAggregatedResources(ctx)
		if err != nil {
			return err
		}
		send = func() error { return s.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: lds}) }
		recv = func() (any, error) { return s.Recv() }
	} else {
		s, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			return err
		}
		send = func() error { return s.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: lds}) }
		recv = func() (any, error) { return s.Recv() }
	}
	if err := send(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	r, err := recv()
	if err == nil {
		t.Errorf("got a response: %v", r)
	}
	return err
}

func wantCode(t *testing.T, err error, code codes.Code, text string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(err.Error(), text) {
		t.Errorf("error %v, want %s with %q", err, code, text)
	}
}

func apis() map[string]bool { return map[string]bool{"delta": false, "sotw": true} }

// TestBoundIdentityGetsItsGroup: a client whose certificate is bound to its node group gets the
// group's configuration, over Delta and SotW.
func TestBoundIdentityGetsItsGroup(t *testing.T) {
	m := startMTLS(t)
	node := &corev3.Node{Id: "envoy-1", Cluster: gw}
	d := newDelta(t, m.addr, node, m.client(t, gw))
	d.subscribe(lds)
	equal(t, "delta listeners", deltaNames(t, d.next(lds)), []string{xdstest.ListenerName(gw)})
	s := newSotw(t, m.addr, node, m.client(t, gw))
	s.subscribe(lds)
	equal(t, "sotw listeners", sotwNames(t, s.next(lds)), []string{xdstest.ListenerName(gw)})
}

// TestBoundIdentityRefusesAnotherGroup: a client whose certificate is bound to another group
// than the one it claims is refused before anything is sent, and the refusal is logged with the
// peer, the group claimed and the certificate's identity.
func TestBoundIdentityRefusesAnotherGroup(t *testing.T) {
	m := startMTLS(t)
	for api, sotw := range apis() {
		t.Run(api, func(t *testing.T) {
			err := refused(t, sotw, m.addr, &corev3.Node{Id: "thief-" + api, Cluster: gw}, m.client(t, other))
			wantCode(t, err, codes.PermissionDenied, `node group "ns/gw" is not the one of the client certificate ("ns/other")`)
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			if _, err := m.logs.Wait(ctx, "WARN xDS client refused", "api="+api, "node=thief-"+api, "peer=127.0.0.1:",
				"group=ns/gw", "identity=ns/other", "certificate=[spiffe://mcpgate.test/group/ns/other]"); err != nil {
				t.Error(err)
			}
		})
	}
	// A node with no cluster claims its id as group; a node with neither claims "".
	err := refused(t, false, m.addr, &corev3.Node{Id: other}, m.client(t, gw))
	wantCode(t, err, codes.PermissionDenied, `node group "ns/other"`)
	err = refused(t, true, m.addr, nil, m.client(t, gw))
	wantCode(t, err, codes.PermissionDenied, `node group ""`)
}

// TestBoundIdentityNodeSwitch: a client cannot switch to another group's node on a stream that
// began with its own: the stream ends at the request naming the other node.
func TestBoundIdentityNodeSwitch(t *testing.T) {
	m := startMTLS(t)
	node := &corev3.Node{Id: "envoy-1", Cluster: gw}
	switched := &corev3.Node{Id: "envoy-1", Cluster: other}

	d := newDelta(t, m.addr, node, m.client(t, gw))
	d.subscribe(lds)
	d.ack(d.next(lds))
	d.send(deltaRequest{&discoveryv3.DeltaDiscoveryRequest{Node: switched, TypeUrl: cds}})
	wantCode(t, d.end(), codes.PermissionDenied, `node group "ns/other"`)

	s := newSotw(t, m.addr, node, m.client(t, gw))
	s.subscribe(lds)
	r := s.next(lds)
	s.send(sotwRequest{&discoveryv3.DiscoveryRequest{Node: switched, TypeUrl: lds, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}})
	wantCode(t, s.end(), codes.PermissionDenied, `node group "ns/other"`)
}

// TestBoundIdentityNeedsCertificate: no configuration without a verified client certificate:
// TLS refuses a client without one or with one of another CA, and a bound server serving
// plaintext (misconfigured) refuses every stream.
func TestBoundIdentityNeedsCertificate(t *testing.T) {
	m := startMTLS(t)
	node := &corev3.Node{Id: "envoy-1", Cluster: gw}
	foreign := xdstest.NewCA(t).Client(t, xdstest.GroupURI(gw))
	for api, sotw := range apis() {
		if err := refused(t, sotw, m.addr, node, m.as(nil)); status.Code(err) != codes.Unavailable {
			t.Errorf("%s without a client certificate: %v, want Unavailable (TLS handshake)", api, err)
		}
		if err := refused(t, sotw, m.addr, node, m.as(&foreign)); status.Code(err) != codes.Unavailable {
			t.Errorf("%s with a certificate of another CA: %v, want Unavailable (TLS handshake)", api, err)
		}
	}

	logs := &xdstest.Logs{}
	srv := xds.New(logs.Logger())
	srv.BindIdentity(xdstest.Identity)
	update(t, srv, gateways(xdstest.Gateway(gw, 9000, "/")))
	addr := xdstest.Serve(t, srv)
	for _, sotw := range apis() {
		err := refused(t, sotw, addr, node, grpc.WithTransportCredentials(insecure.NewCredentials()))
		wantCode(t, err, codes.Unauthenticated, "xDS needs a verified client certificate")
	}
	if got := logs.Find("WARN xDS client refused", "peer=127.0.0.1:", "reason=no verified client certificate"); len(got) != 2 {
		t.Errorf("refusals logged: %q, want one per stream", got)
	}
}

// TestBoundIdentityCertificateWithoutGroup: a verified certificate that the identity function
// binds to no group gets nothing.
func TestBoundIdentityCertificateWithoutGroup(t *testing.T) {
	m := startMTLS(t)
	cert := m.ca.Client(t, "spiffe://elsewhere.test/ns/gw")
	err := refused(t, false, m.addr, &corev3.Node{Id: "envoy-1", Cluster: gw}, m.as(&cert))
	wantCode(t, err, codes.PermissionDenied, "client certificate [spiffe://elsewhere.test/ns/gw]: no URI SAN")
}

// TestBoundIdentityFetch: the unary Fetch of the per-type services is bound as streams are.
func TestBoundIdentityFetch(t *testing.T) {
	m := startMTLS(t)
	lc := listenerservice.NewListenerDiscoveryServiceClient(dial(t, m.addr, m.client(t, gw)))
	r, err := lc.FetchListeners(t.Context(), &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "envoy-1", Cluster: gw}, TypeUrl: lds})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "fetched listeners", sotwNames(t, r), []string{xdstest.ListenerName(gw)})
	_, err = lc.FetchListeners(t.Context(), &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "envoy-1", Cluster: other}, TypeUrl: lds})
	wantCode(t, err, codes.PermissionDenied, `node group "ns/other"`)
	if got := m.logs.Find("WARN xDS client refused", "api=fetch", "group=ns/other", "identity=ns/gw"); len(got) != 1 {
		t.Errorf("refusals logged: %q", got)
	}
}

// TestServerTLSErrors: a configuration that could not verify clients is refused.
func TestServerTLSErrors(t *testing.T) {
	if _, err := xds.New(nil).MutualTLS(&tls.Config{}, nil); err == nil {
		t.Error("MutualTLS without an identity accepted")
	}
	if _, err := xds.ServerTLS(nil); err == nil {
		t.Error("nil config accepted")
	}
	_, err := xds.ServerTLS(&tls.Config{})
	for _, want := range []string{"no server certificate", "no client CA"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
