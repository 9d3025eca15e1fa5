package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fileRouting is testdata/e2e-routing.yaml, a Gateway of its own beside the lab's.
const fileRouting = "e2e-routing.yaml"

// routing is the Gateway of testdata/e2e-routing.yaml while a test runs, with the plain upstream
// it routes to.
type routing struct {
	s    *suite
	addr string // the Gateway's listener
	up   *recorder
}

// startRouting serves testdata/e2e-routing.yaml on a free port until the test ends (mcpgate
// starts a data plane for the Gateway, and stops it when the file is removed), and waits until
// its routes and policies are in force.
func startRouting(t *testing.T) *routing {
	s := env
	free, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	up := newRecorder()
	t.Cleanup(up.srv.Close)
	serveTestdata(t, fileRouting, map[string]string{"GATEWAY_PORT": strconv.Itoa(free[0]), "FETCH_PORT": strconv.Itoa(s.ports.fetch), "PLAIN_PORT": portOf(up.srv)})
	r := &routing{s: s, addr: addr(free[0]), up: up}
	eventually(t, "the routing Gateway serves its routes and policies", func() error {
		for _, c := range []struct {
			path string
			want int
		}{{"/public/ready", 200}, {"/private/ready", 403}} {
			a, err := r.raw("GET", c.path, nil, "")
			if err != nil {
				return err
			}
			if a.status != c.want {
				return fmt.Errorf("GET %s: %d, want %d", c.path, a.status, c.want)
			}
		}
		return nil
	})
	return r
}

// raw sends one HTTP/1.1 request with target exactly as given (no client cleans or escapes it)
// and reads the answer's status and headers.
func (r *routing) raw(method, target string, header map[string]string, body string) (httpAnswer, error) {
	conn, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
	if err != nil {
		return httpAnswer{}, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return httpAnswer{}, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n", method, target, r.addr, len(body))
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return httpAnswer{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return httpAnswer{}, fmt.Errorf("%s %s: %w", method, target, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return httpAnswer{status: resp.StatusCode, header: resp.Header, body: string(data)}, nil
}

// accessLines returns the data plane's access-log lines of a route.
func (r *routing) accessLines(route string) ([]map[string]any, error) {
	lines, err := jsonLines(r.s.stdoutLog())
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, l := range lines {
		if l["route_name"] == route {
			out = append(out, l)
		}
	}
	return out, nil
}

// recorder is a plain HTTP upstream that remembers each request's path and headers.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []http.Request
}

func newRecorder() *recorder {
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec.mu.Lock()
		rec.seen = append(rec.seen, http.Request{Method: req.Method, RequestURI: req.RequestURI, Header: req.Header.Clone()})
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"path": req.RequestURI})
	}))
	return rec
}

// requests returns the requests whose request target starts with prefix.
func (rec *recorder) requests(prefix string) []http.Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []http.Request
	for _, req := range rec.seen {
		if strings.HasPrefix(req.RequestURI, prefix) {
			out = append(out, req)
		}
	}
	return out
}

// TestWeightedPlainBackendIsCheckedAsItself: a rule sends 1% of /mcp to an MCP backend and 99% to
// a plain one, under a traffic rule that reads mcp.method (only tools/list passes). The client's
// tools/call POSTs (one source address: the weighted pick sends them to one cluster, at 99 % the
// plain one, which the access log shows) are all refused (403): on the plain backend the rule
// runs on the request's headers, where mcp.method is no tools/list. Before, the plain cluster inherited the MCP
// cluster's x-mcpgate-mcp from the route-level ext_proc config (Envoy merges the levels' gRPC
// metadata key by key), so ext_proc deferred the rule to a body Envoy never sent it, and the
// call reached the plain upstream; and the plain backend's requests were logged and audited with
// the MCP backend's target.
func TestWeightedPlainBackendIsCheckedAsItself(t *testing.T) {
	r := startRouting(t)
	const route = "httproute/e2e-routing/mixed/rule/0/match/0"
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"http://127.0.0.1:1/"}}}`
	header := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	const n = 20
	codes := map[int]int{}
	for range n {
		a, err := r.raw("POST", "/mcp", header, call)
		if err != nil {
			t.Fatal(err)
		}
		codes[a.status]++
	}
	if codes[http.StatusForbidden] != n {
		t.Errorf("answers to %d tools/call POSTs: %v, want %d x 403", n, codes, n)
	}
	if got := r.up.requests("/mcp"); len(got) != 0 {
		t.Errorf("the plain upstream got %d of the refused calls", len(got))
	}
	// The refusals came from the plain cluster's own config, which names its backend and no target.
	eventually(t, "access-log lines of calls refused on the plain backend", func() error {
		lines, err := r.accessLines(route)
		if err != nil {
			return err
		}
		plain := 0
		for _, l := range lines {
			md, _ := l["mcpgate"].(map[string]any)
			if md["backend"] != "e2e-routing/plain" {
				continue
			}
			if md["target"] != nil {
				t.Fatalf("a request to the plain backend has the MCP target %v: %v", md["target"], l)
			}
			if md["decision"] == "deny" && fmt.Sprint(l["response_code"]) == "403" {
				plain++
			}
		}
		if plain == 0 {
			return fmt.Errorf("%d lines of route %s, none of a call refused on backend e2e-routing/plain", len(lines), route)
		}
		return nil
	})
}

// TestAccessLogPathIsTheRequests: a client sends x-envoy-original-path, which Envoy does not
// sanitize by itself (header_sanitizing.rst lists the x-envoy-* headers it removes; this is not
// one). The access log's path is the path the request was routed by, and its original_path is
// empty, whether the request is forwarded (/public, no policy) or refused by ext_proc before the
// router (/private): the route configuration's internal_only_headers drop the client's header
// before any filter. A route that rewrites the path (/renamed -> /public) logs the path it
// forwarded and the client's as original_path, and only Envoy's x-envoy-original-path reaches the
// upstream. (Before, the log's path was %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%: whatever the client
// wrote.) Both paths are logged without their query string.
func TestAccessLogPathIsTheRequests(t *testing.T) {
	r := startRouting(t)
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	forged := map[string]string{"X-Envoy-Original-Path": "/forged-" + id}
	for _, c := range []struct {
		path, logged string
		original     any // the access log's original_path
		status       int
	}{
		{"/public/log-" + id, "/public/log-" + id, nil, http.StatusOK},
		{"/private/log-" + id, "/private/log-" + id, nil, http.StatusForbidden},
		{"/renamed/log-" + id, "/public/log-" + id, "/renamed/log-" + id, http.StatusOK},
		// the query string, where clients put tokens, is not logged
		{"/public/query-" + id + "?access_token=SECRET-" + id, "/public/query-" + id, nil, http.StatusOK},
		{"/private/query-" + id + "?token=SECRET-" + id, "/private/query-" + id, nil, http.StatusForbidden},
		{"/renamed/rquery-" + id + "?api_key=SECRET-" + id, "/public/rquery-" + id, "/renamed/rquery-" + id, http.StatusOK},
	} {
		a, err := r.raw("GET", c.path, forged, "")
		if err != nil {
			t.Fatal(err)
		}
		if a.status != c.status {
			t.Fatalf("GET %s: %d, want %d", c.path, a.status, c.status)
		}
		eventually(t, "access-log line of GET "+c.path, func() error {
			lines, err := jsonLines(r.s.stdoutLog())
			if err != nil {
				return err
			}
			var seen []string
			for _, l := range lines {
				if l["request_id"] == nil || !strings.Contains(fmt.Sprint(l["path"], l["original_path"]), id) {
					continue
				}
				if l["path"] == c.logged && l["original_path"] == c.original && fmt.Sprint(l["response_code"]) == strconv.Itoa(c.status) {
					return nil
				}
				seen = append(seen, fmt.Sprintf("path %v original_path %v (%v)", l["path"], l["original_path"], l["response_code"]))
			}
			return fmt.Errorf("no access-log line of GET %s with path %s and original_path %v answered %d; this test's lines: %q", c.path, c.logged, c.original, c.status, seen)
		})
	}
	seen := r.up.requests("/public/log-" + id)
	if len(seen) != 2 {
		t.Fatalf("the upstream got %d requests for /public/log-%s, want 2 (one as /renamed)", len(seen), id)
	}
	var originals []string
	for _, req := range seen {
		originals = append(originals, req.Header.Get("X-Envoy-Original-Path"))
	}
	slices.Sort(originals)
	if want := []string{"", "/renamed/log-" + id}; !slices.Equal(originals, want) {
		t.Errorf("the upstream got x-envoy-original-path %q, want %q (Envoy's, never the client's)", originals, want)
	}
	for _, f := range r.s.mcpgate.logs {
		if b, err := os.ReadFile(f); err != nil || strings.Contains(string(b), "SECRET-"+id) {
			t.Errorf("%s: a token sent in the query string is in the logs (or: %v)", f, err)
		}
	}
}

// TestAccessLogNamesRoutesWithoutExtProc: the access log reads the gateway and route from the
// route's metadata and the backend and MCP target from the upstream cluster's, so a route without
// ext_proc (/public: a plain backend under no policy) logs them too; before, ext_proc wrote them
// into each request's dynamic metadata and such routes logged none. A request ext_proc refuses
// before the router (/private, 403) still logs its cluster's backend, and a tools/call the MCP
// backend answers logs its target next to what ext_proc wrote.
func TestAccessLogNamesRoutesWithoutExtProc(t *testing.T) {
	r := startRouting(t)
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	mcpHeader := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	for _, c := range []struct {
		method, path string
		header       map[string]string
		body         string
		status       int
		route        string // the Envoy route; the log's mcpgate.route is its rule
		want         map[string]any
	}{
		{"GET", "/public/names-" + id, nil, "", http.StatusOK, "httproute/e2e-routing/public/rule/0/match/0",
			map[string]any{"gateway": "e2e-routing/routing", "route": "e2e-routing/public/rule/0", "backend": "e2e-routing/plain", "target": nil,
				"method": nil, "authn": nil, "decision": nil}},
		{"GET", "/private/names-" + id, nil, "", http.StatusForbidden, "httproute/e2e-routing/private/rule/0/match/0",
			map[string]any{"gateway": "e2e-routing/routing", "route": "e2e-routing/private/rule/0", "backend": "e2e-routing/plain", "target": nil,
				"decision": "deny"}},
		// /sticky is half MCP: the session hash (the client's address) decides which backend
		// answers, so the test takes whichever and checks the target follows the backend. (Its
		// line is logged as /sticky: paths are logged without their query.)
		{"POST", "/sticky?names-" + id, mcpHeader, call, 0, "httproute/e2e-routing/sticky/rule/0/match/0",
			map[string]any{"gateway": "e2e-routing/routing", "route": "e2e-routing/sticky/rule/0"}},
	} {
		a, err := r.raw(c.method, c.path, c.header, c.body)
		if err != nil {
			t.Fatal(err)
		}
		if c.status != 0 && a.status != c.status {
			t.Fatalf("%s %s: %d, want %d", c.method, c.path, a.status, c.status)
		}
		eventually(t, "access-log line of "+c.method+" "+c.path, func() error {
			lines, err := r.accessLines(c.route)
			if err != nil {
				return err
			}
			logged, _, _ := strings.Cut(c.path, "?")
			for _, l := range lines {
				if l["path"] != logged {
					continue
				}
				md, _ := l["mcpgate"].(map[string]any)
				for k, v := range c.want {
					if md[k] != v {
						t.Fatalf("%s %s: mcpgate.%s is %v, want %v: %v", c.method, c.path, k, md[k], v, l)
					}
				}
				if c.route == "httproute/e2e-routing/sticky/rule/0/match/0" {
					switch md["backend"] {
					case "e2e-routing/mcp":
						if md["target"] != "fetch" || md["method"] != "tools/list" {
							t.Fatalf("the MCP backend's line has target %v and method %v, want fetch and tools/list: %v", md["target"], md["method"], l)
						}
					case "e2e-routing/plain":
						if md["target"] != nil {
							t.Fatalf("the plain backend's line has the MCP target %v: %v", md["target"], l)
						}
					default:
						t.Fatalf("the line names backend %v: %v", md["backend"], l)
					}
				}
				return nil
			}
			return fmt.Errorf("no access-log line of route %s with path %s (%d lines of the route)", c.route, c.path, len(lines))
		})
	}
}

// TestPathsAreNormalizedBeforeRouting: /private is under a traffic rule, /public and every other
// path are not. Paths that a server would read as /private (dot segments, doubled slashes,
// escaped slashes) reach the /private route and its rule, or are redirected to the path they
// mean (escaped slashes, as Envoy's UNESCAPE_AND_REDIRECT does), never the upstream through an
// open route. Before, /public/../private/x matched /public and //private/x and
// /public%2F..%2Fprivate/x the catch-all, and went upstream unchecked.
func TestPathsAreNormalizedBeforeRouting(t *testing.T) {
	r := startRouting(t)
	for _, c := range []struct {
		target   string
		status   int
		location string
	}{
		{"/public/../private/x", http.StatusForbidden, ""},
		{"/public/./../private/x", http.StatusForbidden, ""},
		{"//private/x", http.StatusForbidden, ""},
		{"/public%2F..%2Fprivate/x", http.StatusTemporaryRedirect, "/private/x"},
		{"/public%5c..%5cprivate/x", http.StatusTemporaryRedirect, "/private/x"},
	} {
		a, err := r.raw("GET", c.target, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if a.status != c.status || a.header.Get("Location") != c.location {
			t.Errorf("GET %s: %d, Location %q; want %d, Location %q", c.target, a.status, a.header.Get("Location"), c.status, c.location)
		}
	}
	// the redirect's target is the rule's route
	if a, err := r.raw("GET", "/private/x", nil, ""); err != nil || a.status != http.StatusForbidden {
		t.Errorf("GET /private/x: %v, %v; want 403", a.status, err)
	}
	r.up.mu.Lock()
	defer r.up.mu.Unlock()
	for _, req := range r.up.seen {
		if strings.Contains(strings.ToLower(req.RequestURI), "private") {
			t.Errorf("the upstream got %s", req.RequestURI)
		}
	}
}

// TestPathParametersAreRefused: /private is under a traffic rule, "/" is open. Envoy's PathPrefix
// /private does not match /private;x, so before, it matched the open catch-all and reached the
// upstream, which a Java server (Tomcat, Jetty, Spring strip ";params") serves as /private. A
// path with path parameters now gets 400 from the route every virtual host starts with (the
// access log names it), whatever route it would have matched; a ";" in the query is no path
// parameter and passes.
func TestPathParametersAreRefused(t *testing.T) {
	r := startRouting(t)
	const refusal = "mcpgate/refuse-ambiguous-paths" // translator.RefuseAmbiguousPathsRoute
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	// (Double-escaped paths such as /public%2%46..%2%46private/, which the same route refuses,
	// cannot be sent through the double: its HTTP/1 server, Go's net/http, answers an invalid
	// escape with 400 itself, where Envoy passes it on. translator's TestPathParametersAreRefused
	// checks the route's regex on them.)
	for _, target := range []string{"/private;x/" + id, "/private;jsessionid=" + id, "/public;x/" + id, "/;x/private/" + id} {
		a, err := r.raw("GET", target, map[string]string{"X-Let-Me-In": "no"}, "")
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusBadRequest || !strings.Contains(a.body, "path parameters") {
			t.Errorf("GET %s: %d %q, want 400 refusing path parameters", target, a.status, a.body)
		}
		eventually(t, "access-log line of GET "+target, func() error {
			lines, err := r.accessLines(refusal)
			if err != nil {
				return err
			}
			for _, l := range lines {
				if l["path"] == target {
					if fmt.Sprint(l["response_code"]) != "400" {
						t.Fatalf("line of GET %s: %v", target, l)
					}
					return nil
				}
			}
			return fmt.Errorf("no access-log line of route %s with path %s (%d lines of the route)", refusal, target, len(lines))
		})
	}
	if a, err := r.raw("GET", "/public/q-"+id+"?a=1;b=2", nil, ""); err != nil || a.status != http.StatusOK {
		t.Errorf("GET with ; in the query: %v, %v; want 200", a.status, err)
	}
	if got := r.up.requests("/public/q-" + id + "?a=1;b=2"); len(got) != 1 {
		t.Errorf("the upstream got %d requests with ; in the query, want 1", len(got))
	}
	r.up.mu.Lock()
	defer r.up.mu.Unlock()
	for _, req := range r.up.seen {
		if path, _, _ := strings.Cut(req.RequestURI, "?"); strings.Contains(path, ";") {
			t.Errorf("the upstream got %s", req.RequestURI)
		}
	}
}

// TestWeightedMCPBackendsKeepAClientOnOneCluster: a rule splits /sticky half and half between
// an MCP backend and another; the requests of one client (one source address, the routes'
// session hash) all go to the same cluster, since an MCP session lives on one server. Before,
// Envoy drew the cluster at random for each request.
func TestWeightedMCPBackendsKeepAClientOnOneCluster(t *testing.T) {
	r := startRouting(t)
	const n = 20
	prefix := "/sticky/" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	for i := range n {
		a, err := r.raw("GET", prefix+strconv.Itoa(i), nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if a.status >= 500 {
			t.Fatalf("GET %s%d: %d %s: the gateway did not forward it", prefix, i, a.status, a.body)
		}
	}
	if got := len(r.up.requests(prefix)); got != 0 && got != n {
		t.Errorf("the plain backend got %d of %d requests of one client, want all or none", got, n)
	}
	// Each request's access-log line names the backend of the cluster that served it: one for all.
	eventually(t, "access-log lines of the /sticky requests", func() error {
		lines, err := r.accessLines("httproute/e2e-routing/sticky/rule/0/match/0")
		if err != nil {
			return err
		}
		backends := map[string]int{}
		for _, l := range lines {
			if path, _ := l["path"].(string); strings.HasPrefix(path, prefix) {
				md, _ := l["mcpgate"].(map[string]any)
				backends[fmt.Sprint(md["backend"])]++
			}
		}
		if len(backends) != 1 {
			return fmt.Errorf("the %d requests of one client were served by backends %v, want one", n, backends)
		}
		for _, count := range backends {
			if count != n {
				return fmt.Errorf("access-log lines by backend %v, want %d lines", backends, n)
			}
		}
		return nil
	})
}
