package double_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// raw sends one HTTP/1.1 request with the request-target exactly as given (Go's client would
// clean or re-escape some of the paths these tests need) and returns the response.
func raw(t *testing.T, addr, method, target string, hdr ...string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, addr)
	for i := 0; i+1 < len(hdr); i += 2 {
		req += hdr[i] + ": " + hdr[i+1] + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// pathOptions sets the HCM's path normalization fields on the test listener.
func pathOptions(normalize, merge bool, escaped hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction) func(*hcmv3.HttpConnectionManager, *listenerv3.Listener) {
	return func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
		if normalize {
			h.NormalizePath = wrapperspb.Bool(true)
		}
		h.MergeSlashes = merge
		h.PathWithEscapedSlashesAction = escaped
	}
}

// TestPathNormalizationBeforeRoutingAndExtProc: Envoy normalizes the path
// (ConnectionManagerUtility::maybeNormalizePath) before the route is matched and before any filter
// sees the request: a path that climbs out of an allowed prefix ("/public/../admin", written
// with %2F, a backslash or %2e) reaches the /admin route, ext_proc and the upstream see the
// normalized path, the query is untouched; a path that cannot be normalized is a 400 that
// neither ext_proc nor the upstream see.
func TestPathNormalizationBeforeRoutingAndExtProc(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-raw-uri", r.RequestURI)
	})
	l := listener(t, e.listen, extProcFilter(5*time.Second), pathOptions(true, true, hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD))
	admin := &routev3.Route{Name: "admin", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/admin"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 403,
			Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "admin only"}}}}}
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, admin, prefixRoute("public", "/public/", "up", nil))),
		staticCluster("up", up.addr))
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}

	resp, body := raw(t, e.listen, "GET", "//public///x/./y/../z?q=/../a//b")
	if resp.StatusCode != 200 || resp.Header.Get("x-raw-uri") != "/public/x/z?q=/../a//b" {
		t.Fatalf("got %d %q, upstream saw %q; want /public/x/z?q=/../a//b", resp.StatusCode, body, resp.Header.Get("x-raw-uri"))
	}
	st := e.ext.streams(t, 1)[0]
	st.ended(t)
	if p, _ := header(st.messages()[0].GetRequestHeaders().GetHeaders(), ":path"); p != "/public/x/z?q=/../a//b" {
		t.Errorf("ext_proc saw :path %q, want the normalized path", p)
	}
	resp, _ = raw(t, e.listen, "GET", "/public/%41%7e%2d")
	if got := resp.Header.Get("x-raw-uri"); got != "/public/A~-" {
		t.Errorf("unreserved escapes: upstream saw %q, want them decoded", got)
	}
	for _, p := range []string{"/public/..%2Fadmin", `/public\..\admin`, "/public/%2e%2e/admin", "/public/..;x=1/admin", "/public/..%5cadmin/"} {
		if resp, body := raw(t, e.listen, "GET", p); resp.StatusCode != 403 || body != "admin only" {
			t.Errorf("%s: got %d %q, want the /admin route's 403", p, resp.StatusCode, body)
		}
	}
	before := up.count()
	streams := len(e.ext.streams(t, 1))
	for _, p := range []string{"/public/a%00b", "/public/a#frag"} {
		resp, body := raw(t, e.listen, "GET", p)
		if resp.StatusCode != 400 || body != "" || resp.Header.Get("content-length") != "0" {
			t.Errorf("%s: got %d %q (content-length %q), want an empty 400", p, resp.StatusCode, body, resp.Header.Get("content-length"))
		}
	}
	if up.count() != before {
		t.Error("the upstream saw a path that failed normalization")
	}
	logs := e.logs(9)
	if n := len(e.ext.streams(t, 1)); n != streams {
		t.Errorf("%d ext_proc streams after the 400s, want %d: the filter chain does not exist yet", n, streams)
	}
	byPath := map[string]map[string]any{}
	for _, l := range logs {
		byPath[fmt.Sprint(l["path"])] = l
	}
	for _, p := range []string{"/public/a%00b", "/public/a#frag"} {
		// Answered before mutateRequestHeaders and the route match: no x-request-id, no route.
		if l := byPath[p]; l["response_code"] != float64(400) || l["details"] != "path_normalization_failed" || l["route_name"] != nil || l["request_id"] != nil {
			t.Errorf("access log of %s: %v", p, l)
		}
	}
	if _, ok := byPath["/public/x/z?q=/../a//b"]; !ok {
		t.Errorf("no access log line with the normalized path: %v", byPath)
	}
}

// TestEscapedSlashesActions: path_with_escaped_slashes_action as Envoy applies it: REJECT_REQUEST
// answers 400 when %2F/%5C is present, UNESCAPE_AND_REDIRECT answers 307 with the unescaped and
// normalized path (query kept as sent) as location, or 400 for a gRPC request, KEEP_UNCHANGED
// (and no normalization) forwards the path as sent.
func TestEscapedSlashesActions(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-raw-uri", r.RequestURI)
	})
	push := func(mod func(*hcmv3.HttpConnectionManager, *listenerv3.Listener)) {
		t.Helper()
		l := listener(t, e.listen, nil, mod)
		e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("all", "/", "up", nil))), staticCluster("up", up.addr))
		if n := e.lastNACK(); n != "" {
			t.Fatalf("NACK: %s", n)
		}
	}
	push(pathOptions(false, false, hcmv3.HttpConnectionManager_REJECT_REQUEST))
	if resp, _ := raw(t, e.listen, "GET", "/a%2fb"); resp.StatusCode != 400 {
		t.Errorf("REJECT_REQUEST %%2f: got %d", resp.StatusCode)
	}
	if resp, _ := raw(t, e.listen, "GET", "/a%2Bb/../c?x=%2F"); resp.StatusCode != 200 || resp.Header.Get("x-raw-uri") != "/a%2Bb/../c?x=%2F" {
		t.Errorf("REJECT_REQUEST without escaped slash in the path: got %d, upstream saw %q", resp.StatusCode, resp.Header.Get("x-raw-uri"))
	}

	push(pathOptions(true, true, hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT))
	resp, body := raw(t, e.listen, "GET", "/x%2F..%2F%2Fpublic/a?q=%2F")
	if resp.StatusCode != 307 || resp.Header.Get("location") != "/public/a?q=%2F" || body != "" {
		t.Errorf("UNESCAPE_AND_REDIRECT: got %d location %q body %q", resp.StatusCode, resp.Header.Get("location"), body)
	}
	if resp, _ := raw(t, e.listen, "POST", "/svc%2FMethod", "content-type", "application/grpc", "content-length", "0"); resp.StatusCode != 400 {
		t.Errorf("UNESCAPE_AND_REDIRECT of a gRPC request: got %d, want 400", resp.StatusCode)
	}
	if resp, _ := raw(t, e.listen, "GET", "/x/../public"); resp.StatusCode != 200 || resp.Header.Get("x-raw-uri") != "/public" {
		t.Errorf("UNESCAPE_AND_REDIRECT without escaped slash: got %d, upstream saw %q", resp.StatusCode, resp.Header.Get("x-raw-uri"))
	}

	push(nil)
	if resp, _ := raw(t, e.listen, "GET", "/a/../b//c%2F"); resp.StatusCode != 200 || resp.Header.Get("x-raw-uri") != "/a/../b//c%2F" {
		t.Errorf("no normalization: got %d, upstream saw %q", resp.StatusCode, resp.Header.Get("x-raw-uri"))
	}
}
