package kubernetes_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/xds/client"
)

// servedTypes are the type URLs a gateway's node group holds.
var servedTypes = []string{
	resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType, contract.PolicyTypeURL,
}

// adsWatch is a Delta ADS client subscribed, as one node group, to every type a gateway gets; it
// keeps the last set of each type.
type adsWatch struct {
	mu   sync.Mutex
	sets map[string]map[string]proto.Message
}

// watchADS subscribes to ctrl's xDS as node group group until owner ends. Under mutual TLS it
// presents the certificate the controller wrote into the Gateway's Secret for its data plane.
func watchADS(owner *testing.T, ctrl *controller, group string) *adsWatch {
	owner.Helper()
	cfg := client.Config{
		Addr:     ctrl.addr,
		Node:     &corev3.Node{Id: "kube-test", Cluster: group},
		TypeURLs: servedTypes,
	}
	if ctrl.tls {
		cfg.TLS = gatewayTLS(owner, group)
	}
	w := &adsWatch{sets: map[string]map[string]proto.Message{}}
	cfg.Handler = w.handle
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- client.Run(ctx, cfg) }()
	owner.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			owner.Errorf("ADS client: %v", err)
		}
	})
	return w
}

func (w *adsWatch) handle(typeURL string, resources map[string]*anypb.Any) error {
	set := make(map[string]proto.Message, len(resources))
	for name, a := range resources {
		m, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s %s: %w", typeURL, name, err)
		}
		set[name] = m
	}
	w.mu.Lock()
	w.sets[typeURL] = set
	w.mu.Unlock()
	return nil
}

// names returns the names of the resources of typeURL, sorted.
func (w *adsWatch) names(typeURL string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.sets[typeURL]))
}

// received reports whether a response of typeURL arrived, even an empty one.
func (w *adsWatch) received(typeURL string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.sets[typeURL]
	return ok
}

// get returns one resource.
func (w *adsWatch) get(typeURL, name string) (proto.Message, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m, ok := w.sets[typeURL][name]
	return m, ok
}

// all returns every type's set (type URL -> name -> resource).
func (w *adsWatch) all() map[string]map[string]proto.Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]map[string]proto.Message{}
	for typ, set := range w.sets {
		out[typ] = maps.Clone(set)
	}
	return out
}

// hasNames returns an error unless the resources of typeURL are exactly names.
func (w *adsWatch) hasNames(typeURL string, names ...string) error {
	got := w.names(typeURL)
	want := slices.Sorted(slices.Values(names))
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s: served %q, want %q", typeURL, got, want)
	}
	return nil
}

// hasEndpoints returns an error unless the ClusterLoadAssignment of cluster is served and holds
// exactly the addresses want, in any order.
func (w *adsWatch) hasEndpoints(cluster string, want ...string) error {
	m, ok := w.get(resourcev3.EndpointType, cluster)
	if !ok {
		return fmt.Errorf("no ClusterLoadAssignment %s; served %q", cluster, w.names(resourcev3.EndpointType))
	}
	var got []string
	for _, l := range m.(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			got = append(got, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		return fmt.Errorf("ClusterLoadAssignment %s: endpoints %q, want %q", cluster, got, want)
	}
	return nil
}

// diffSets compares two type URL -> name -> resource maps of the given types and describes the
// first differences.
func diffSets(got, want map[string]map[string]proto.Message, types ...string) error {
	var diffs []string
	for _, typ := range types {
		g, wnt := got[typ], want[typ]
		for _, name := range slices.Sorted(maps.Keys(wnt)) {
			gm, ok := g[name]
			switch {
			case !ok:
				diffs = append(diffs, fmt.Sprintf("%s %s: missing", typ, name))
			case !sameResource(gm, wnt[name]):
				diffs = append(diffs, fmt.Sprintf("%s %s: differs:\n got %v\nwant %v", typ, name, gm, wnt[name]))
			}
		}
		for _, name := range slices.Sorted(maps.Keys(g)) {
			if _, ok := wnt[name]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s %s: unexpected", typ, name))
			}
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%d differences:\n%s", len(diffs), fmt.Sprint(diffs))
	}
	return nil
}

// sameResource compares two resources by content: their JSON forms, in which Any payloads are
// decoded and map entries sorted, so that two encodings of the same content are equal.
func sameResource(a, b proto.Message) bool {
	ja, err1 := protojson.Marshal(a)
	jb, err2 := protojson.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// xdsServerName is the name the controller's xDS certificate carries in these tests (the host of
// labOptions' XDSAddress).
const xdsServerName = "mcpgate-controller.mcpgate-system.svc"

// gatewayTLS returns the client TLS of the data plane of gateway ("NS/NAME"): the certificate in
// the Secret NAME-xds-tls the controller writes, as its pods mount it.
func gatewayTLS(t *testing.T, gateway string) *tls.Config {
	t.Helper()
	ns, name, _ := strings.Cut(gateway, "/")
	var sec corev1.Secret
	eventually(t, "the xDS client certificate Secret of "+gateway, func() error {
		return testCluster.client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name + "-xds-tls"}, &sec)
	})
	pair, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatalf("Secret %s/%s-xds-tls: %v", ns, name, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(sec.Data["ca.crt"]) {
		t.Fatalf("Secret %s/%s-xds-tls: no ca.crt", ns, name)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: xdsServerName, MinVersion: tls.VersionTLS12}
}
