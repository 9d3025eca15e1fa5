package translator_test

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/translator"
)

// listenerHCMs returns the HTTP connection managers of every listener of the lab and weights
// inputs.
func listenerHCMs(t *testing.T) map[string]*hcmv3.HttpConnectionManager {
	t.Helper()
	out := map[string]*hcmv3.HttpConnectionManager{}
	for _, in := range []string{"testdata/lab.in.yaml", "testdata/weights.in.yaml"} {
		o := translator.Translate(loadInputs(t, in), translator.Options{})
		for _, k := range o.GatewayKeys() {
			for _, l := range o.Gateways[k].Listeners {
				hcm := &hcmv3.HttpConnectionManager{}
				if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
					t.Fatal(err)
				}
				out[l.Name] = hcm
			}
		}
	}
	if len(out) < 2 {
		t.Fatalf("%d listeners", len(out))
	}
	return out
}

// TestClientCannotSetTheLoggedPath: Envoy does not sanitize x-envoy-original-path, so every
// route configuration names it in internal_only_headers: the connection manager removes a
// client's before any filter runs, and only the router's rewrite sets it. The access log's path is
// the routed (or forwarded) path; original_path reads the header, the path before a rewrite. Both
// are logged without their query string, where clients put tokens.
func TestClientCannotSetTheLoggedPath(t *testing.T) {
	for name, hcm := range listenerHCMs(t) {
		for _, al := range hcm.AccessLog {
			cfg := &streamv3.StdoutAccessLog{}
			if err := al.GetTypedConfig().UnmarshalTo(cfg); err != nil {
				t.Fatal(err)
			}
			fields := cfg.GetLogFormat().GetJsonFormat().GetFields()
			if got := fields["path"].GetStringValue(); got != "%REQ_WITHOUT_QUERY(:PATH)%" {
				t.Errorf("listener %s: access log path %q", name, got)
			}
			if got := fields["original_path"].GetStringValue(); got != "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH)%" {
				t.Errorf("listener %s: access log original_path %q", name, got)
			}
			if fs := cfg.GetLogFormat().GetFormatters(); len(fs) != 1 || fs[0].GetTypedConfig().GetTypeUrl() != "type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery" {
				t.Errorf("listener %s: access log formatters %v: REQ_WITHOUT_QUERY needs req_without_query", name, fs)
			}
		}
		if len(hcm.AccessLog) == 0 {
			t.Errorf("listener %s: no access log", name)
		}
		if hcm.InternalAddressConfig != nil {
			t.Errorf("listener %s: internal_address_config %v makes some clients internal: they could set x-envoy-original-path", name, hcm.InternalAddressConfig)
		}
	}
	for _, in := range []string{"testdata/lab.in.yaml", "testdata/weights.in.yaml"} {
		o := translator.Translate(loadInputs(t, in), translator.Options{})
		for _, k := range o.GatewayKeys() {
			for _, rc := range o.Gateways[k].Routes {
				if !slices.Contains(rc.InternalOnlyHeaders, "x-envoy-original-path") {
					t.Errorf("route configuration %s keeps a client's x-envoy-original-path: internal_only_headers %v", rc.Name, rc.InternalOnlyHeaders)
				}
			}
		}
	}
}

// TestListenersNormalizePaths: every listener resolves dot segments, merges slashes and redirects
// paths with escaped slashes before routes match, so that the route (and its policy) a path
// matches is the one of the path upstreams read.
func TestListenersNormalizePaths(t *testing.T) {
	for name, hcm := range listenerHCMs(t) {
		if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() ||
			hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT {
			t.Errorf("listener %s: normalize_path %v, merge_slashes %v, path_with_escaped_slashes_action %v", name,
				hcm.GetNormalizePath(), hcm.GetMergeSlashes(), hcm.GetPathWithEscapedSlashesAction())
		}
	}
}

// TestPathParametersAreRefused: Envoy's PathPrefix /private does not match /private;x, so such a
// request fell through to a broader route (a catch-all "/" under a weaker policy, or none), while
// Java servers (Tomcat, Jetty, Spring) strip ";params" and serve /private. Every virtual host of
// every golden configuration answers a path with ";" (before the query: Envoy matches safe_regex
// on the path without it) with a 400 of its own route, ahead of every other route, without
// ext_proc; a path without ";" is not matched by it.
func TestPathParametersAreRefused(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	vhosts := 0
	for _, in := range ins {
		out := translator.Translate(loadInputs(t, in), readOptions(t, in))
		for _, k := range out.GatewayKeys() {
			for _, rc := range out.Gateways[k].Routes {
				if rc.Name == contract.MuxUpstreamRoutes {
					continue // the bootstrap's mux upstream listener's: only the mux reaches it, with its targets' paths
				}
				for _, vh := range rc.VirtualHosts {
					vhosts++
					if len(vh.Routes) == 0 {
						t.Errorf("%s: virtual host %s has no route", in, vh.Name)
						continue
					}
					r := vh.Routes[0]
					if r.Name != translator.RefuseAmbiguousPathsRoute {
						t.Errorf("%s: virtual host %s starts with route %s, want %s", in, vh.Name, r.Name, translator.RefuseAmbiguousPathsRoute)
						continue
					}
					dr := r.GetDirectResponse()
					if dr.GetStatus() != 400 || !strings.Contains(dr.GetBody().GetInlineString(), "path parameters") {
						t.Errorf("%s: virtual host %s: %s answers %v", in, vh.Name, r.Name, dr)
					}
					if eff := mergePerRoute(perRouteOf(t, r.TypedPerFilterConfig)); !eff.disabled {
						t.Errorf("%s: virtual host %s: %s runs ext_proc", in, vh.Name, r.Name)
					}
					if f := mcpgateFields(r.Metadata); f[contract.FieldGateway] != k {
						t.Errorf("%s: virtual host %s: %s has metadata %v, want gateway %s", in, vh.Name, r.Name, f, k)
					}
					re := regexp.MustCompile("^(?:" + r.GetMatch().GetSafeRegex().GetRegex() + ")$") // Envoy: the whole path must match
					for _, p := range []string{"/private;x", "/private;", "/;", "/a/b;c=d/e", ";",
						"/public%2F..%2Fprivate", "/public%2f..%2fprivate", "/a%5Cb", "/a%5cb", "/a/%2E%2E/b", "/a/%2e%2e/b"} {
						if !re.MatchString(p) {
							t.Errorf("%s: %s does not match %q", in, r.Name, p)
						}
					}
					for _, p := range []string{"/private", "/", "/a/b%3Bc", "/mcp", "/a%20b", "/a%25b", "/a%2"} {
						if re.MatchString(p) {
							t.Errorf("%s: %s matches %q", in, r.Name, p)
						}
					}
				}
			}
		}
	}
	if vhosts < 20 {
		t.Errorf("checked %d virtual hosts: too few to mean anything", vhosts)
	}
}

// TestExtProcNeverReroutes: the ext_proc filter retains the route cache whatever a reply says
// (route_cache_action RETAIN: clear_route_cache is ignored), so that no ext_proc reply can have
// Envoy match a request again, on a route under another policy, after it was authorized.
func TestExtProcNeverReroutes(t *testing.T) {
	for name, hcm := range listenerHCMs(t) {
		i := slices.IndexFunc(hcm.HttpFilters, func(f *hcmv3.HttpFilter) bool { return f.Name == translator.ExtProcFilterName })
		if i < 0 {
			t.Fatalf("listener %s: no ext_proc filter", name)
		}
		ep := &extprocv3.ExternalProcessor{}
		if err := hcm.HttpFilters[i].GetTypedConfig().UnmarshalTo(ep); err != nil {
			t.Fatal(err)
		}
		if ep.GetRouteCacheAction() != extprocv3.ExternalProcessor_RETAIN || ep.GetDisableClearRouteCache() {
			t.Errorf("listener %s: route_cache_action %v, disable_clear_route_cache %v; want RETAIN only", name, ep.GetRouteCacheAction(), ep.GetDisableClearRouteCache())
		}
	}
}
