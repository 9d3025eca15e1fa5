package xds_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mcpgate/mcpgate/contract"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
	"github.com/mcpgate/mcpgate/xds"
	"github.com/mcpgate/mcpgate/xds/internal/xdstest"
)

const (
	lds    = resourcev3.ListenerType
	rds    = resourcev3.RouteType
	cds    = resourcev3.ClusterType
	eds    = resourcev3.EndpointType
	policy = contract.PolicyTypeURL
)

type groups = map[string]map[string][]proto.Message

func gateways(gws ...map[string][]proto.Message) groups {
	m := map[string]map[string][]proto.Message{}
	for _, g := range gws {
		m[strings.TrimSuffix(cachev3.GetResourceName(g[lds][0]), "/8080")] = g
	}
	return xdstest.Groups(m)
}

func start(t *testing.T, g groups) (*xds.Server, string, *xdstest.Logs) {
	t.Helper()
	logs := &xdstest.Logs{}
	srv := xds.New(logs.Logger())
	if g != nil {
		if err := srv.Update(g); err != nil {
			t.Fatal(err)
		}
	}
	return srv, xdstest.Serve(t, srv), logs
}

func update(t *testing.T, srv *xds.Server, g groups) {
	t.Helper()
	if err := srv.Update(g); err != nil {
		t.Fatal(err)
	}
}

func decode(t *testing.T, a *anypb.Any) proto.Message {
	t.Helper()
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sotwNames(t *testing.T, r *discoveryv3.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range r.GetResources() {
		if a.GetTypeUrl() != r.GetTypeUrl() {
			t.Errorf("resource of type %s in a %s response", a.GetTypeUrl(), r.GetTypeUrl())
		}
		out = append(out, cachev3.GetResourceName(decode(t, a)))
	}
	slices.Sort(out)
	return out
}

func deltaNames(t *testing.T, r *discoveryv3.DeltaDiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, res := range r.GetResources() {
		if got := cachev3.GetResourceName(decode(t, res.GetResource())); got != res.GetName() {
			t.Errorf("resource %q carries a %s named %q", res.GetName(), r.GetTypeUrl(), got)
		}
		if res.GetVersion() == "" {
			t.Errorf("resource %q has no version", res.GetName())
		}
		out = append(out, res.GetName())
	}
	slices.Sort(out)
	return out
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %q, want %q", what, got, want)
	}
}

func routeCount(t *testing.T, a *anypb.Any) int {
	t.Helper()
	return len(decode(t, a).(*routev3.RouteConfiguration).GetVirtualHosts()[0].GetRoutes())
}

const gw = "ns/gw"

// TestSotwLikeEnvoy subscribes as Envoy does over SotW ADS: clusters and listeners by wildcard,
// then endpoints and routes by the names they reference, and policies; it ACKs, and a change
// brings a new version of every type.
func TestSotwLikeEnvoy(t *testing.T) {
	srv, addr, _ := start(t, gateways(xdstest.Gateway(gw, 9000, "/")))
	c := newSotw(t, addr, &corev3.Node{Id: "envoy-1", Cluster: gw})
	subs := [][]string{{cds}, {eds, xdstest.ClusterName(gw)}, {lds}, {rds, xdstest.ListenerName(gw)}, {policy}}
	want := map[string][]string{
		cds: {xdstest.ClusterName(gw)}, eds: {xdstest.ClusterName(gw)}, lds: {xdstest.ListenerName(gw)},
		rds: {xdstest.ListenerName(gw)}, policy: {xdstest.PolicyName(gw)},
	}
	for _, s := range subs {
		c.subscribe(s[0], s[1:]...)
		r := c.next(s[0])
		if r.GetVersionInfo() != "1" {
			t.Errorf("%s version %q, want 1", s[0], r.GetVersionInfo())
		}
		equal(t, s[0], sotwNames(t, r), want[s[0]])
		c.ack(r, s[1:]...)
	}

	update(t, srv, gateways(xdstest.Gateway(gw, 9000, "/", "/mcp")))
	for _, s := range subs {
		r := c.next(s[0])
		if r.GetVersionInfo() != "2" {
			t.Errorf("%s version %q after the update, want 2", s[0], r.GetVersionInfo())
		}
		equal(t, s[0], sotwNames(t, r), want[s[0]])
		if s[0] == rds && routeCount(t, r.GetResources()[0]) != 2 {
			t.Errorf("routes of version 2: %v", r.GetResources())
		}
		c.ack(r, s[1:]...)
	}

	update(t, srv, gateways(xdstest.Gateway(gw, 9000, "/", "/mcp")))
	if v := srv.Version(); v != "2" {
		t.Errorf("an update without change made version %s", v)
	}
}

// TestDeltaLikeEnvoy subscribes as Envoy does over Delta ADS (routes and endpoints by name) and
// checks that an update sends only the resources that changed, with the new system version.
func TestDeltaLikeEnvoy(t *testing.T) {
	srv, addr, _ := start(t, gateways(xdstest.Gateway(gw, 9000, "/")))
	c := newDelta(t, addr, &corev3.Node{Id: "envoy-1", Cluster: gw})
	subs := [][]string{{cds}, {eds, xdstest.ClusterName(gw)}, {lds}, {rds, xdstest.ListenerName(gw)}, {policy}}
	for _, s := range subs {
		c.subscribe(s[0], s[1:]...)
		r := c.next(s[0])
		if r.GetSystemVersionInfo() != "1" {
			t.Errorf("%s version %q, want 1", s[0], r.GetSystemVersionInfo())
		}
		if len(deltaNames(t, r)) != 1 {
			t.Errorf("%s: %v", s[0], deltaNames(t, r))
		}
		c.ack(r)
	}

	update(t, srv, gateways(xdstest.Gateway(gw, 9000, "/", "/mcp")))
	r := c.next(rds)
	if r.GetSystemVersionInfo() != "2" || routeCount(t, r.GetResources()[0].GetResource()) != 2 {
		t.Errorf("routes after the update: version %q, %v", r.GetSystemVersionInfo(), r.GetResources())
	}
	c.ack(r)

	update(t, srv, gateways(xdstest.Gateway(gw, 9001, "/", "/mcp")))
	r = c.next(eds)
	port := decode(t, r.GetResources()[0].GetResource()).(*endpointv3.ClusterLoadAssignment).GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
	if r.GetSystemVersionInfo() != "3" || port != 9001 {
		t.Errorf("endpoints after the update: version %q, port %d", r.GetSystemVersionInfo(), port)
	}
	c.ack(r)

	// A cluster change now: had versions 2 or 3 sent clusters, listeners or policies, they would
	// be on the stream before this response.
	g := xdstest.Gateway(gw, 9001, "/", "/mcp")
	cl := proto.CloneOf(g[cds][0].(*clusterv3.Cluster))
	cl.ConnectTimeout = durationpb.New(5 * time.Second)
	g[cds][0] = cl
	update(t, srv, gateways(g))
	if r := c.next(cds); r.GetSystemVersionInfo() != "4" {
		t.Errorf("clusters: version %q, want 4", r.GetSystemVersionInfo())
	}
	for _, typ := range []string{lds, policy, rds, eds} {
		if n := len(c.pending[typ]); n != 0 {
			t.Errorf("%d unexpected %s responses", n, typ)
		}
	}
}

// TestDeltaWildcardAndRemoval subscribes to everything by wildcard, as the Envoy test double and
// ext_proc do, and sees a gateway's resources removed when its group vanishes.
func TestDeltaWildcardAndRemoval(t *testing.T) {
	srv, addr, _ := start(t, gateways(xdstest.Gateway(gw, 9000, "/"), xdstest.Gateway("ns/other", 9000, "/")))
	c := newDelta(t, addr, &corev3.Node{Id: "double", Cluster: gw})
	for _, typ := range append(xdstest.EnvoyTypes(), policy) {
		c.subscribe(typ)
		r := c.next(typ)
		if len(deltaNames(t, r)) != 1 || r.GetSystemVersionInfo() != "1" {
			t.Errorf("%s: version %q, %v", typ, r.GetSystemVersionInfo(), deltaNames(t, r))
		}
		c.ack(r)
	}
	update(t, srv, gateways(xdstest.Gateway("ns/other", 9000, "/")))
	if got := srv.Groups(); !slices.Equal(got, []string{"*", "ns/other"}) {
		t.Errorf("groups after removal: %q", got)
	}
	for _, typ := range append(xdstest.EnvoyTypes(), policy) {
		r := c.next(typ)
		if len(r.GetResources()) != 0 || len(r.GetRemovedResources()) != 1 || r.GetSystemVersionInfo() != "2" {
			t.Errorf("%s after removal: version %q, resources %v, removed %q", typ, r.GetSystemVersionInfo(), r.GetResources(), r.GetRemovedResources())
		}
		c.ack(r)
	}
	// The group comes back: its clients get it again.
	update(t, srv, gateways(xdstest.Gateway(gw, 9000, "/"), xdstest.Gateway("ns/other", 9000, "/")))
	if r := c.next(lds); r.GetSystemVersionInfo() != "3" || len(r.GetResources()) != 1 {
		t.Errorf("listeners when the group returns: version %q, %v", r.GetSystemVersionInfo(), r.GetResources())
	}
}

// TestNACK rejects a version over both protocols: the NACK is logged with the node, the type, the
// rejected version and the client's message, and later versions still flow. The ACK of a later
// version is logged once at info level, naming what was rejected; later ACKs are debug lines. A
// SotW request with the rejected nonce that does not accept it (Envoy's subscription change after
// a NACK) is no such ACK.
func TestNACK(t *testing.T) {
	srv, addr, logs := start(t, gateways(xdstest.Gateway(gw, 9000, "/")))
	d := newDelta(t, addr, &corev3.Node{Id: "delta-envoy", Cluster: gw})
	s := newSotw(t, addr, &corev3.Node{Id: "sotw-envoy", Cluster: gw})
	d.subscribe(rds, xdstest.ListenerName(gw))
	s.subscribe(rds, xdstest.ListenerName(gw))
	d.nack(d.next(rds), "delta: route has no cluster")
	rejected := s.next(rds)
	s.nack(rejected, "", "sotw: route has no cluster", xdstest.ListenerName(gw))

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for _, want := range [][]string{
		{"ERROR", "NACK", "api=delta", "node=delta-envoy", "group=ns/gw", "type=" + rds, "version=1", "error=delta: route has no cluster"},
		{"ERROR", "NACK", "api=sotw", "node=sotw-envoy", "type=" + rds, "version=1", "error=sotw: route has no cluster", "accepted_version="},
	} {
		if _, err := logs.Wait(ctx, want...); err != nil {
			t.Error(err)
		}
	}

	reg := prometheus.NewRegistry()
	if err := srv.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if n := metric(t, reg, "mcpgate_xds_nacks_total", rds); n != 2 {
		t.Errorf("mcpgate_xds_nacks_total{type_url=%q} = %v, want 2", rds, n)
	}
	if n := metric(t, reg, "mcpgate_xds_nacks_total", lds); n != 0 { // there at 0 before any NACK
		t.Errorf("mcpgate_xds_nacks_total{type_url=%q} = %v, want 0", lds, n)
	}
	if got, want := srv.Rejections(), []string{
		"node delta-envoy: " + rds + ": delta: route has no cluster",
		"node sotw-envoy: " + rds + ": sotw: route has no cluster",
	}; !slices.Equal(got, want) {
		t.Errorf("Rejections() = %q, want %q", got, want)
	}

	// the SotW client asks again, holding no version: the rejected one is sent again (after
	// the request is taken), still rejected
	s.send(sotwRequest{&discoveryv3.DiscoveryRequest{TypeUrl: rds, ResponseNonce: rejected.GetNonce(), ResourceNames: []string{xdstest.ListenerName(gw)}}})
	again := s.next(rds)
	if got := srv.Rejections(); len(got) != 2 || again.GetVersionInfo() != "1" {
		t.Errorf("after a SotW request with the rejected nonce: Rejections() = %q, version %q sent; want both rejections, version 1", got, again.GetVersionInfo())
	}
	s.nack(again, "", "sotw: route has no cluster", xdstest.ListenerName(gw))

	update(t, srv, gateways(xdstest.Gateway(gw, 9000, "/", "/mcp")))
	if v := metric(t, reg, "mcpgate_xds_snapshot_version", ""); v != 2 {
		t.Errorf("version gauge %v", v)
	}
	if r := d.next(rds); r.GetSystemVersionInfo() != "2" {
		t.Errorf("delta after a NACK: version %q", r.GetSystemVersionInfo())
	} else {
		d.ack(r)
	}
	if r := s.next(rds); r.GetVersionInfo() != "2" {
		t.Errorf("sotw after a NACK: version %q", r.GetVersionInfo())
	} else {
		s.ack(r, xdstest.ListenerName(gw))
	}
	for _, want := range [][]string{
		{"INFO xDS ACK after a NACK", "api=delta", "node=delta-envoy", "group=ns/gw", "type=" + rds, "version=2", "rejected_version=1", "rejected_error=delta: route has no cluster"},
		{"INFO xDS ACK after a NACK", "api=sotw", "node=sotw-envoy", "group=ns/gw", "type=" + rds, "version=2", "rejected_version=1", "rejected_error=sotw: route has no cluster"},
	} {
		if _, err := logs.Wait(ctx, want...); err != nil {
			t.Error(err)
		}
	}
	if got := srv.Rejections(); len(got) != 0 {
		t.Errorf("Rejections() after the ACKs = %q, want none", got)
	}

	// the next ACKs are ordinary: debug lines
	update(t, srv, gateways(xdstest.Gateway(gw, 9000, "/", "/mcp", "/x")))
	d.ack(d.next(rds))
	s.ack(s.next(rds), xdstest.ListenerName(gw))
	for _, node := range []string{"node=delta-envoy", "node=sotw-envoy"} {
		if _, err := logs.Wait(ctx, "DEBUG xDS ACK", node, "version=3"); err != nil {
			t.Error(err)
		}
	}
	if got := logs.Find("after a NACK"); len(got) != 2 {
		t.Errorf("%d lines of an ACK after a NACK, want 2 (one per client):\n%s", len(got), strings.Join(got, "\n"))
	}
}

// TestGroups checks that each node gets the snapshot of its own group: by cluster, by id when the
// cluster is empty, and "*" with the policies of every gateway. A node whose group appears later
// gets it when it appears.
func TestGroups(t *testing.T) {
	a, b := "ns/a", "other/b"
	srv, addr, logs := start(t, gateways(xdstest.Gateway(a, 9000, "/"), xdstest.Gateway(b, 9001, "/")))
	ca := newDelta(t, addr, &corev3.Node{Id: "pod-a", Cluster: a})
	cb := newSotw(t, addr, &corev3.Node{Id: b})
	all := newDelta(t, addr, &corev3.Node{Id: "extproc", Cluster: contract.AllGateways})
	late := newDelta(t, addr, &corev3.Node{Id: "late", Cluster: "ns/late"})
	ca.subscribe(lds)
	cb.subscribe(lds)
	all.subscribe(policy)
	late.subscribe(lds)
	r := ca.next(lds)
	equal(t, "group a", deltaNames(t, r), []string{xdstest.ListenerName(a)})
	ca.ack(r)
	rs := cb.next(lds)
	equal(t, "group b", sotwNames(t, rs), []string{xdstest.ListenerName(b)})
	cb.ack(rs)
	r = all.next(policy)
	equal(t, "group *", deltaNames(t, r), []string{xdstest.PolicyName(a), xdstest.PolicyName(b)})
	all.ack(r)
	// A client of a group not served is told about in the log, those served are not.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := logs.Wait(ctx, "WARN", "node group that is not served", "node=late", "group=ns/late"); err != nil {
		t.Error(err)
	}
	if got := logs.Find("not served"); len(got) != 1 {
		t.Errorf("warnings of unserved groups: %q; want only node late's", got)
	}

	update(t, srv, gateways(xdstest.Gateway(a, 9000, "/"), xdstest.Gateway(b, 9001, "/"), xdstest.Gateway("ns/late", 9002, "/")))
	equal(t, "late group", deltaNames(t, late.next(lds)), []string{xdstest.ListenerName("ns/late")})
	r = all.next(policy)
	equal(t, "group * after the update", deltaNames(t, r), []string{xdstest.PolicyName("ns/late")})
	if p := decode(t, r.GetResources()[0].GetResource()).(*policyv1.Policy); len(p.GetMcpRules()) != 1 {
		t.Errorf("policy: %v", p)
	}
}

// TestReflection lists the services with a gRPC reflection client, as grpcurl does.
func TestReflection(t *testing.T) {
	_, addr, _ := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := reflectionpb.NewServerReflectionClient(dial(t, addr)).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, svc := range r.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	for _, want := range []string{
		"envoy.service.discovery.v3.AggregatedDiscoveryService",
		"envoy.service.listener.v3.ListenerDiscoveryService",
		"envoy.service.route.v3.RouteDiscoveryService",
		"envoy.service.cluster.v3.ClusterDiscoveryService",
		"envoy.service.endpoint.v3.EndpointDiscoveryService",
		"grpc.reflection.v1.ServerReflection",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %q, not %s", names, want)
		}
	}
}

func TestDebugHandler(t *testing.T) {
	srv, _, _ := start(t, gateways(xdstest.Gateway(gw, 9000, "/")))
	// The redaction sees every resource; here it hides the policies' rules.
	redact := func(m proto.Message) proto.Message {
		if p, ok := m.(*policyv1.Policy); ok {
			p = proto.CloneOf(p)
			p.McpRules = nil
			return p
		}
		return m
	}
	h := httptest.NewServer(srv.DebugHandler(redact))
	defer h.Close()
	get := func(query string) (int, string) {
		resp, err := http.Get(h.URL + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("")
	var dump struct {
		Version string
		Groups  map[string]struct {
			Version   string
			Resources map[string][]map[string]any
		}
	}
	if err := json.Unmarshal([]byte(body), &dump); code != 200 || err != nil {
		t.Fatalf("%d %v: %s", code, err, body)
	}
	if dump.Version != "1" || len(dump.Groups) != 2 {
		t.Errorf("dump: version %q, groups %v", dump.Version, dump.Groups)
	}
	g := dump.Groups[gw]
	if g.Version != "1" || g.Resources[lds][0]["name"] != xdstest.ListenerName(gw) || g.Resources[policy][0]["name"] != xdstest.PolicyName(gw) {
		t.Errorf("group %s: %+v", gw, g)
	}
	// Any fields are shown as their types' JSON.
	if !strings.Contains(body, `"routeConfigName": "ns/gw/8080"`) {
		t.Errorf("listener's connection manager not shown: %s", body)
	}
	if strings.Contains(body, "mcp.tool.name") {
		t.Errorf("the redaction was not applied: %s", body)
	}
	if s, _ := srv.Snapshot(gw); len(s.GetResources(policy)[xdstest.PolicyName(gw)].(*policyv1.Policy).GetMcpRules()) != 1 {
		t.Error("the redaction changed the served policy")
	}
	if code, body := get("?group=" + contract.AllGateways); code != 200 || strings.Contains(body, lds) {
		t.Errorf("group *: %d %s", code, body)
	}
	if code, _ := get("?group=nope/nope"); code != http.StatusNotFound {
		t.Errorf("unknown group: %d", code)
	}
	// without a redaction, nothing is shown
	rec := httptest.NewRecorder()
	srv.DebugHandler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/xds", nil))
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), gw) {
		t.Errorf("no redaction: %d %s", rec.Code, rec.Body.String())
	}
}

// TestUpdateKeepsGoodResources gives Update resources it cannot serve: they are named in the
// error and left out, and the rest is served.
func TestUpdateKeepsGoodResources(t *testing.T) {
	g := gateways(xdstest.Gateway(gw, 9000, "/"))
	g[gw][policy] = append(g[gw][policy], &policyv1.Policy{}, xdstest.Policy(xdstest.PolicyName(gw)), &routev3.RouteConfiguration{Name: "wrong"}, nil)
	srv, addr, logs := start(t, nil)
	err := srv.Update(g)
	for _, want := range []string{"[1]: resource without a name", `[2]: name "EnterpriseAgentgatewayPolicy/ns/gw" used twice`, "[3]: resource of type type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "[4]: nil resource"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	c := newDelta(t, addr, &corev3.Node{Id: "x", Cluster: gw})
	c.subscribe(policy)
	equal(t, "policies", deltaNames(t, c.next(policy)), []string{xdstest.PolicyName(gw)})

	// An inconsistent snapshot is logged and served.
	g = gateways(xdstest.Gateway(gw, 9000, "/"))
	g[gw][cds] = nil
	update(t, srv, g)
	if len(logs.Find("WARN inconsistent snapshot", `Cluster "service/ns/gw/80" is referenced but missing`)) == 0 {
		t.Errorf("no inconsistency logged: %q", logs.Find("inconsistent"))
	}
	if s, _ := srv.Snapshot(gw); len(s.GetResources(cds)) != 0 || len(s.GetResources(lds)) != 1 {
		t.Errorf("inconsistent snapshot not served as given")
	}
}

func TestInconsistencies(t *testing.T) {
	g := xdstest.Gateway(gw, 9000, "/")
	s, err := xds.NewSnapshot("1", g, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := s.Inconsistencies(); len(p) != 0 {
		t.Errorf("consistent snapshot: %q", p)
	}
	rc := proto.CloneOf(g[rds][0].(*routev3.RouteConfiguration))
	rc.VirtualHosts[0].Routes = append(rc.VirtualHosts[0].Routes,
		&routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
			WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "missing"}, {Name: "mcpgate_extproc"}}},
		}}}})
	g[rds] = []proto.Message{rc}
	g[eds] = append(g[eds], &endpointv3.ClusterLoadAssignment{ClusterName: "orphan"})
	g[lds] = nil
	s, _ = xds.NewSnapshot("2", g, nil)
	want := []string{
		`Cluster "mcpgate_extproc" is referenced but missing`,
		`Cluster "missing" is referenced but missing`,
		`ClusterLoadAssignment "orphan" is not referenced`,
		`RouteConfiguration "ns/gw/8080" is not referenced`,
	}
	equal(t, "inconsistencies", s.Inconsistencies(), want)
	equal(t, "with static clusters", s.Inconsistencies(contract.XDSCluster, contract.ExtProcCluster), slices.Delete(slices.Clone(want), 0, 1))
	// the bootstrap's static listener references its route configuration
	equal(t, "with a static route configuration", s.Inconsistencies(contract.XDSCluster, contract.ExtProcCluster, "ns/gw/8080"), want[1:3])
}

// TestInconsistenciesTLS: the Secrets a TLS filter chain names, its certificates and its client
// CA (validation context), must be in the snapshot: a listener waits for them.
func TestInconsistenciesTLS(t *testing.T) {
	g := xdstest.Gateway(gw, 9000, "/")
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3}
	ctx, err := anypb.New(&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "secret/ns/cert", SdsConfig: ads}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "client-ca/ns/gw/8080", SdsConfig: ads}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	l := proto.CloneOf(g[lds][0].(*listenerv3.Listener))
	l.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: ctx}}
	g[lds] = []proto.Message{l}
	g[resourcev3.SecretType] = []proto.Message{&tlsv3.Secret{Name: "secret/ns/cert"}}
	s, err := xds.NewSnapshot("1", g, nil)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "inconsistencies", s.Inconsistencies(contract.XDSCluster, contract.ExtProcCluster), []string{`Secret "client-ca/ns/gw/8080" is referenced but missing`})
}

// metric returns the value of the gauge or counter name of reg whose label (if any) is label.
func metric(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() == label {
				return m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{%s}", name, label)
	return 0
}

func TestPolicyTypeURL(t *testing.T) {
	if got := resourcev3.APITypePrefix + string((&policyv1.Policy{}).ProtoReflect().Descriptor().FullName()); got != contract.PolicyTypeURL {
		t.Errorf("policy type URL %s, want %s", got, contract.PolicyTypeURL)
	}
	if g := xds.GroupOf(&corev3.Node{Id: "id"}); g != "id" {
		t.Errorf("group of a node without cluster: %q", g)
	}
}

// TestLargeRequest sends a Delta request larger than gRPC's default 4 MiB limit: a reconnecting
// Envoy tells the versions of every resource it holds (about 150 bytes per resource).
func TestLargeRequest(t *testing.T) {
	_, addr, _ := start(t, gateways(xdstest.Gateway(gw, 9000, "/")))
	c := newDelta(t, addr, &corev3.Node{Id: "envoy-1", Cluster: gw})
	versions := map[string]string{}
	for i := range 40000 {
		versions[fmt.Sprintf("agentgatewaybackend/ns/backend-%d/target/ns/service-%d/8080", i, i)] = strings.Repeat("0", 64)
	}
	c.send(deltaRequest{&discoveryv3.DeltaDiscoveryRequest{TypeUrl: cds, InitialResourceVersions: versions}})
	r := c.next(cds)
	equal(t, "clusters", deltaNames(t, r), []string{xdstest.ClusterName(gw)})
	if len(r.GetRemovedResources()) != len(versions) {
		t.Errorf("%d resources removed, want the %d the client held", len(r.GetRemovedResources()), len(versions))
	}
}

// TestSotwReconnectSameVersion reconnects a SotW client that holds version "1" of another
// server (a restarted control plane counts from 1 again; replicas count on their own) to a
// server whose version "1" has no policy: the client must hear that its policies are gone.
func TestSotwReconnectSameVersion(t *testing.T) {
	g := gateways(xdstest.Gateway(gw, 9000, "/"))
	g[contract.AllGateways][policy] = nil
	_, addr, _ := start(t, g)
	c := newSotw(t, addr, &corev3.Node{Id: "extproc", Cluster: contract.AllGateways})
	c.send(sotwRequest{&discoveryv3.DiscoveryRequest{TypeUrl: policy, VersionInfo: "1"}})
	if r := c.next(policy); r.GetVersionInfo() != "1" || len(r.GetResources()) != 0 {
		t.Errorf("policies: version %q, %d resources; want 1 and none", r.GetVersionInfo(), len(r.GetResources()))
	}
}

// TestManyClientsComeAndGo connects and disconnects many nodes of one group over both
// protocols: the server forgets each stream when it ends (the open streams gauge returns to 0)
// and each node's disconnection is logged.
func TestManyClientsComeAndGo(t *testing.T) {
	srv, addr, logs := start(t, gateways(xdstest.Gateway(gw, 9000, "/")))
	reg := prometheus.NewRegistry()
	if err := srv.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, addr))
	const n = 50
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		node := &corev3.Node{Id: fmt.Sprintf("pod-%d", i), Cluster: gw}
		d, err := ads.DeltaAggregatedResources(ctx)
		if err == nil {
			err = d.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: lds})
		}
		if err == nil {
			_, err = d.Recv()
		}
		s, err2 := ads.StreamAggregatedResources(ctx)
		if err2 == nil {
			err2 = s.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: cds})
		}
		if err2 == nil {
			_, err2 = s.Recv()
		}
		cancel()
		if err != nil || err2 != nil {
			t.Fatalf("node %d: delta %v, sotw %v", i, err, err2)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for _, api := range []string{"delta", "sotw"} {
		for {
			if v := metric(t, reg, "mcpgate_xds_streams", api); v == 0 {
				break
			} else if ctx.Err() != nil {
				t.Fatalf("%s streams still open: %v", api, v)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := logs.Wait(ctx, "xDS client disconnected", "api="+api, fmt.Sprintf("node=pod-%d ", n-1)); err != nil {
			t.Error(err)
		}
		if got := len(logs.Find("xDS client disconnected", "api="+api)); got != n {
			t.Errorf("%d %s disconnections logged, want %d", got, api, n)
		}
	}
}

// TestTooManyTypesOnOneStream subscribes to more type URLs on one SotW stream than
// go-control-plane buffers responses for (10), each up to date so that the cache keeps a watch,
// then stops reading. The cache sends each watch's response into the stream's buffer while it
// holds its lock: once a large response blocks the stream and the buffer is full, the next
// update would hold that lock for ever and no node group would get an update again. Such a
// stream is refused instead.
func TestTooManyTypesOnOneStream(t *testing.T) {
	big := xdstest.Policy("big")
	big.McpRules[0].Expression = `mcp.tool.name != "` + strings.Repeat("x", 16<<20) + `"`
	g := gateways(xdstest.Gateway(gw, 9000, "/"))
	g[gw][policy] = []proto.Message{big}
	srv, addr, logs := start(t, g)
	proxy := xdstest.NewProxy(t, addr)
	// The stream lasts as long as the test: a refusal must end it, not a deadline.
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, proxy.Addr)).StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The large policy first: its response will block the stream.
	typeURLs := []string{policy}
	for i := range 24 {
		typeURLs = append(typeURLs, fmt.Sprintf("type.googleapis.com/test.Type%d", i))
	}
	for _, typ := range typeURLs {
		// Up to date: the cache keeps a watch and answers at the next version.
		_ = s.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "greedy", Cluster: gw}, TypeUrl: typ, VersionInfo: "1", ResponseNonce: "0"})
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := logs.Wait(ctx, "WARN xDS stream refused: too many resource types", "node=greedy"); err != nil {
		t.Error(err)
	}
	proxy.Stall()
	for i, port := range []uint32{9001, 9002} {
		g := gateways(xdstest.Gateway(gw, port, "/"))
		p := proto.CloneOf(big)
		p.McpRules[0].Expression += strings.Repeat(" && true", i+1)
		g[gw][policy] = []proto.Message{p}
		done := make(chan error, 1)
		go func() { done <- srv.Update(g) }()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(waitFor):
			t.Fatal("Update is blocked")
		}
	}
}

// A resource that breaks its proto's rules, which would make Envoy reject the whole response
// (every resource of its type), is not served: its last valid version is, or nothing when it
// never had one, and Update's error names it. The other resources' changes are served.
func TestInvalidResourceNotServed(t *testing.T) {
	srv := xds.New(nil)
	good := xdstest.Gateway(gw, 9000, "/")
	update(t, srv, gateways(good))
	served := func(typeURL, name string) proto.Message {
		t.Helper()
		s, ok := srv.Snapshot(gw)
		if !ok {
			t.Fatal("gateway not served")
		}
		return s.GetResources(typeURL)[name]
	}

	// The route configuration loses its route's match (required); the cluster's timeout changes.
	next := xdstest.Gateway(gw, 9000, "/")
	next[rds][0].(*routev3.RouteConfiguration).VirtualHosts[0].Routes[0].Match = nil
	next[cds][0].(*clusterv3.Cluster).ConnectTimeout = durationpb.New(3 * time.Second)
	// A new cluster whose typed config (an Any) is invalid inside: upstream HTTP protocol options
	// without the protocol (required).
	bad := proto.CloneOf(next[cds][0].(*clusterv3.Cluster))
	bad.Name = "bad"
	opts, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": opts}
	next[cds] = append(next[cds], bad)
	err = srv.Update(gateways(next))
	for _, want := range []string{
		`RouteConfiguration "ns/gw/8080" is invalid, its last valid version is served: `,
		"Route.Match: value is required",
		`Cluster "bad" is invalid, left out: typed_extension_protocol_options[envoy.extensions.upstreams.http.v3.HttpProtocolOptions]: type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions: `,
		"UpstreamProtocolOptions: value is required",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Update error %v, want it to contain %q", err, want)
		}
	}
	if got := served(rds, xdstest.ListenerName(gw)); !proto.Equal(got, good[rds][0]) {
		t.Errorf("route configuration served %v, want the last valid one", got)
	}
	if got := served(cds, "bad"); got != nil {
		t.Errorf("invalid new cluster served: %v", got)
	}
	if got := served(cds, xdstest.ClusterName(gw)).(*clusterv3.Cluster).GetConnectTimeout().AsDuration(); got != 3*time.Second {
		t.Errorf("valid cluster change not served: timeout %v", got)
	}

	// The route configuration is mended: served, and no error.
	next = xdstest.Gateway(gw, 9000, "/", "/b")
	update(t, srv, gateways(next))
	if got := served(rds, xdstest.ListenerName(gw)); !proto.Equal(got, next[rds][0]) {
		t.Errorf("mended route configuration not served: %v", got)
	}
}
