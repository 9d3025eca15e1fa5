package mux_test

//lint:file-ignore SA1019 the mux relays logging/setLevel, which MCP deprecates (SEP-2577) and servers still serve

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/mux"
)

// upstreamDouble is a test double of Envoy's mux upstream listener (contract.MuxUpstreamListener)
// and of the route configuration the translator emits for it (contract.MuxUpstreamRoutes): on a
// Unix socket, it routes each request by contract.HeaderMuxCluster to that cluster's server,
// without the header, as the route's request_headers_to_remove does. A cluster it does not know
// gets 404, as Envoy's route miss; a cluster whose server is down gets 503, as Envoy's "no
// healthy upstream".
type upstreamDouble struct {
	mu       sync.Mutex
	clusters map[string]http.Handler
	// seen records, per cluster, the headers of the requests routed there, and posts the bodies
	// of its POSTs.
	seen  map[string][]http.Header
	posts map[string][]string
	// deletes receives the cluster of each DELETE routed (dropped when full).
	deletes chan string
}

func (d *upstreamDouble) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cluster := r.Header.Get(contract.HeaderMuxCluster)
	r.Header.Del(contract.HeaderMuxCluster)
	var body []byte
	if r.Method == http.MethodPost {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	d.mu.Lock()
	h, ok := d.clusters[cluster]
	d.seen[cluster] = append(d.seen[cluster], r.Header.Clone())
	if r.Method == http.MethodPost {
		d.posts[cluster] = append(d.posts[cluster], string(body))
	}
	d.mu.Unlock()
	if r.Method == http.MethodDelete {
		select {
		case d.deletes <- cluster:
		default:
		}
	}
	switch {
	case !ok:
		http.Error(w, "route not found", http.StatusNotFound)
	case h == nil:
		http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
	default:
		h.ServeHTTP(w, r)
	}
}

type textArgs struct {
	Text string `json:"text"`
}

// newTarget returns a go-sdk server named name with a tool, a prompt, a resource and a resource
// template of its own (resources can be subscribed to), and its Streamable HTTP handler.
func newTarget(name string) (*mcp.Server, http.Handler) {
	s := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, &mcp.ServerOptions{
		Instructions:       "use " + name,
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	tool := map[string]string{"a": "x", "b": "y", "n": "z", "e": "v"}[name]
	mcp.AddTool(s, &mcp.Tool{Name: tool, Description: "echoes its text, named by " + name},
		func(ctx context.Context, req *mcp.CallToolRequest, in textArgs) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + "." + tool + ": " + in.Text}}}, nil, nil
		})
	// Its tools share a name: only the prefix tells them apart.
	mcp.AddTool(s, &mcp.Tool{Name: "whoami", Description: "names its server"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ textArgs) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "ask", Description: "asks the user (elicitation) and answers with what the user said"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "your color? (" + name + ")",
				RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"color": map[string]any{"type": "string"}}}})
			if err != nil {
				return nil, nil, err
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("%s heard %s %v", name, res.Action, res.Content["color"])}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "count", Description: "sends three progress notifications before it answers"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			for i := 1; i <= 3; i++ {
				if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
					ProgressToken: req.Params.GetProgressToken(), Progress: float64(i), Total: 3, Message: fmt.Sprintf("%s step %d", name, i)}); err != nil {
					return nil, nil, err
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "counted"}}}, nil, nil
		})
	prompt := map[string]string{"a": "p", "b": "q", "n": "r", "e": "o"}[name]
	s.AddPrompt(&mcp.Prompt{Name: prompt, Description: "a prompt of " + name},
		func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: name + "." + prompt}}}}, nil
		})
	uri := "file:///" + name + ".txt"
	s.AddResource(&mcp.Resource{Name: name + "-file", URI: uri, MIMEType: "text/plain"},
		func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "contents of " + name}}}, nil
		})
	s.AddResourceTemplate(&mcp.ResourceTemplate{Name: name + "-notes", URITemplate: "notes://" + name + "/{id}"},
		func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "note of " + name}}}, nil
		})
	return s, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
}

// testSecret is the secret the tests' front hop shares with the mux (contract.HeaderMuxAuth).
const testSecret = "s3cr3t-of-the-front-hop"

// gateway is a mux reached as the front hop's route reaches it: each request gets the route's
// contract.HeaderMux and ext_proc's contract.HeaderMuxAuth (overwriting the client's).
type gateway struct {
	url    string
	double *upstreamDouble
	// servers are the targets' MCP servers, by cluster.
	servers map[string]*mcp.Server
	// getEnded receives the cluster of every target GET stream that ended (its server's handler
	// returned).
	getEnded chan string
	mu       sync.Mutex
	// gets counts the GET requests each cluster got.
	gets map[string]int
	// mux is the mux, desc its contract.HeaderMux (the route's contract.MetadataMux under Never).
	mux  *mux.Server
	desc string
	// upstream serves the double: closing it drops every connection to the targets.
	upstream *http.Server
}

// newGateway serves the mux for the backend of targets (clusters cluster-a, cluster-b, cluster-n
// with servers a, b and n, whose handler answers GET with 405, and "down" for a target whose
// server is down) and returns its URL.
func newGateway(t *testing.T, failureMode string, targets ...contract.MuxTarget) *gateway {
	t.Helper()
	return newGatewayWith(t, failureMode, nil, targets...)
}

// newGatewayWith is newGateway with the mux's options changed by opts (nil: none).
func newGatewayWith(t *testing.T, failureMode string, opts func(*mux.Options), targets ...contract.MuxTarget) *gateway {
	t.Helper()
	return newGatewayMode(t, "Conditional", failureMode, opts, targets...)
}

// newGatewayMode is newGatewayWith for the backend's prefixMode.
func newGatewayMode(t *testing.T, prefixMode, failureMode string, opts func(*mux.Options), targets ...contract.MuxTarget) *gateway {
	t.Helper()
	return newGatewayDesc(t, contract.Mux{Gateway: "ns/gw", Backend: "ns/be", PrefixMode: prefixMode, FailureMode: failureMode, Targets: targets}, opts)
}

// newGatewayDesc is newGatewayMode for the backend m (its Gateway ns/gw). Cluster cluster-e
// serves server e over HTTP+SSE (its GET stream and endpoint at any path).
func newGatewayDesc(t *testing.T, m contract.Mux, opts func(*mux.Options)) *gateway {
	t.Helper()
	gw := &gateway{servers: map[string]*mcp.Server{}, getEnded: make(chan string, 64), gets: map[string]int{}}
	d := &upstreamDouble{clusters: map[string]http.Handler{"down": nil}, seen: map[string][]http.Header{}, posts: map[string][]string{}, deletes: make(chan string, 64)}
	for _, name := range []string{"a", "b", "n", "s", "e"} {
		s, h := newTarget(name)
		cluster := "cluster-" + name
		gw.servers[cluster] = s
		switch name {
		case "s":
			d.clusters[cluster] = stuckGET(h)
		case "e":
			d.clusters[cluster] = gw.watchGET(cluster, mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return s }, nil), false)
		default:
			d.clusters[cluster] = gw.watchGET(cluster, h, name == "n")
		}
	}
	// cluster-stateless-a and -b serve servers a and b with the go-sdk's stateless handler, which
	// offers MCP 2026-07-28 (sessionless requests).
	for _, name := range []string{"a", "b"} {
		s, _ := newTarget(name)
		cluster := "cluster-stateless-" + name
		gw.servers[cluster] = s
		d.clusters[cluster] = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true})
	}
	// cluster-refuse refuses every request as a server that wants a token does.
	d.clusters["cluster-refuse"] = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="refuse"`)
		http.Error(w, "no token", http.StatusUnauthorized)
	})
	// cluster-refuse-calls is server a, but refuses its calls as a server that checks each one.
	_, a := newTarget("a")
	d.clusters["cluster-refuse-calls"] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"tools/call"`)) {
			http.Error(w, "calls refused", http.StatusForbidden)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		a.ServeHTTP(w, r)
	})
	// cluster-hang never answers; cluster-hang-lists is server h, but never answers a list.
	d.clusters["cluster-hang"] = http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	_, hs := newTarget("h")
	d.clusters["cluster-hang-lists"] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`/list"`)) {
			<-r.Context().Done()
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		hs.ServeHTTP(w, r)
	})
	gw.double = d
	sock, srv := serveUnixServer(t, d)
	gw.upstream = srv

	desc, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	o := mux.Options{
		Upstream: func(gw string) string {
			if gw != "ns/gw" {
				t.Errorf("Upstream(%q): want the route's gateway ns/gw", gw)
			}
			return "unix://" + sock
		},
		Logger:  testLogger(),
		Version: "test",
		Secret:  testSecret,
	}
	if opts != nil {
		opts(&o)
	}
	h := mux.New(o)
	gw.url, gw.mux, gw.desc = serveFront(t, h, string(desc)), h, string(desc)
	return gw
}

// requests returns the number of requests routed to cluster so far.
func (g *gateway) requests(cluster string) int {
	g.double.mu.Lock()
	defer g.double.mu.Unlock()
	return len(g.double.seen[cluster])
}

// watchGET counts a cluster's GET requests and reports on getEnded each GET stream that ended; a
// cluster noGET answers GET with 405, as a server without GET stream does.
func (g *gateway) watchGET(cluster string, h http.Handler, noGET bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			h.ServeHTTP(w, r)
			return
		}
		g.mu.Lock()
		g.gets[cluster]++
		g.mu.Unlock()
		if noGET {
			w.Header().Set("Allow", "POST, DELETE")
			http.Error(w, "no GET stream", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
		select {
		case g.getEnded <- cluster:
		default:
		}
	})
}

// stuckGET serves h but never answers a GET: it holds the request until the client gives up.
func stuckGET(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			h.ServeHTTP(w, r)
			return
		}
		<-r.Context().Done()
	})
}

var (
	targetA = contract.MuxTarget{Name: "a", Cluster: "cluster-a", Path: "/mcp"}
	// targetS's server never answers a GET.
	targetS = contract.MuxTarget{Name: "s", Cluster: "cluster-s", Path: "/mcp"}
	targetB = contract.MuxTarget{Name: "b", Cluster: "cluster-b", Path: "/mcp"}
	// targetN's server has no GET stream (405).
	targetN = contract.MuxTarget{Name: "n", Cluster: "cluster-n", Path: "/mcp"}
	// targetDown's server is down.
	targetDown = contract.MuxTarget{Name: "c", Cluster: "down", Path: "/mcp"}
	// targetE's server speaks HTTP+SSE (MCP 2024-11-05).
	targetE = contract.MuxTarget{Name: "e", Cluster: "cluster-e", Path: "/sse", Protocol: contract.TransportSSE}
)

func connect(t *testing.T, url string, opts *mcp.ClientOptions) (*mcp.ClientSession, error) {
	t.Helper()
	return connectWith(t, url, mcp.NewClient(&mcp.Implementation{Name: "mux-test", Version: "1"}, opts), nil)
}

// connectWith connects client to url through hc (nil: the default client).
func connectWith(t *testing.T, url string, client *mcp.Client, hc *http.Client) (*mcp.ClientSession, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, MaxRetries: -1}, nil)
	if err == nil {
		t.Cleanup(func() { cs.Close() })
	}
	return cs, err
}

func text(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if len(res.Content) != 1 {
		t.Fatalf("result %+v: want one content", res)
	}
	tc, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		t.Fatalf("content %T: want text", res.Content[0])
	}
	return tc.Text
}

func TestMuxSession(t *testing.T) {
	gw := newGateway(t, "FailClosed", targetA, targetB)
	cs, err := connect(t, gw.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	init := cs.InitializeResult()
	if init.ServerInfo.Name != mux.ServerName || init.ServerInfo.Version != "test" {
		t.Errorf("serverInfo %+v: want mcpgate test", init.ServerInfo)
	}
	if init.Capabilities.Tools == nil || init.Capabilities.Prompts == nil || init.Capabilities.Resources == nil {
		t.Errorf("capabilities %+v: want the targets' tools, prompts and resources", init.Capabilities)
	}
	if init.Instructions != "a: use a\n\nb: use b" {
		t.Errorf("instructions %q: want each target's under its name", init.Instructions)
	}

	tools := wantTools(t, cs, "a_ask", "a_count", "a_whoami", "a_x", "b_ask", "b_count", "b_whoami", "b_y")
	if tools.NextCursor != "" {
		t.Errorf("tools/list nextCursor %q: want none, the list is whole", tools.NextCursor)
	}

	for tool, want := range map[string]string{"a_x": "a.x: hi", "b_y": "b.y: hi", "a_whoami": "a", "b_whoami": "b"} {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"text": "hi"}})
		if err != nil {
			t.Fatalf("tools/call %s: %v", tool, err)
		}
		if got := text(t, res); got != want {
			t.Errorf("tools/call %s: %q, want %q", tool, got, want)
		}
	}
	// A prefix that is no target, a target's name unprefixed, another target's tool.
	for _, tool := range []string{"c_x", "x", "b_x", "whoami"} {
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{}})
		if err == nil || !strings.Contains(err.Error(), "Unknown tool: "+tool) && !strings.Contains(err.Error(), "unknown tool") {
			t.Errorf("tools/call %s: %v, want Unknown tool", tool, err)
		}
	}

	prompts, err := cs.ListPrompts(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(prompts.Prompts) != 2 || prompts.Prompts[0].Name != "a_p" || prompts.Prompts[1].Name != "b_q" {
		t.Errorf("prompts/list: %+v, want a_p and b_q", prompts.Prompts)
	}
	p, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "b_q"})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Messages[0].Content.(*mcp.TextContent).Text; got != "b.q" {
		t.Errorf("prompts/get b_q: %q, want b.q", got)
	}
	if _, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "a_q"}); err == nil {
		t.Error("prompts/get a_q: want an error, a has no prompt q")
	}

	resources, err := cs.ListResources(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, r := range resources.Resources {
		uris = append(uris, r.URI)
	}
	if !slices.Equal(uris, []string{"a+file:///a.txt", "b+file:///b.txt"}) {
		t.Errorf("resources/list: %q, want the targets' URIs prefixed with TARGET+", uris)
	}
	templates, err := cs.ListResourceTemplates(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(templates.ResourceTemplates) != 2 || templates.ResourceTemplates[1].URITemplate != "b+notes://b/{id}" {
		t.Errorf("resources/templates/list: %+v, want b+notes://b/{id} second", templates.ResourceTemplates)
	}
	for uri, want := range map[string]string{"b+file:///b.txt": "contents of b", "a+notes://a/7": "note of a"} {
		r, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri})
		if err != nil {
			t.Fatalf("resources/read %s: %v", uri, err)
		}
		if r.Contents[0].Text != want {
			t.Errorf("resources/read %s: %q, want %q", uri, r.Contents[0].Text, want)
		}
	}
	if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///a.txt"}); err == nil || !strings.Contains(err.Error(), "Unknown resource: file:///a.txt") {
		t.Errorf("resources/read of an unprefixed URI: %v, want Unknown resource", err)
	}
	if err := cs.Ping(ctx, nil); err != nil {
		t.Errorf("ping: %v", err)
	}
	if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
		t.Errorf("logging/setLevel: %v", err)
	}

	// What the targets got: their own session ids, the cluster header removed by the route
	// (the double), not the mux's description.
	gw.double.mu.Lock()
	defer gw.double.mu.Unlock()
	for _, cluster := range []string{"cluster-a", "cluster-b"} {
		seen := gw.double.seen[cluster]
		if len(seen) < 5 {
			t.Fatalf("cluster %s got %d requests, want every fanned-out one", cluster, len(seen))
		}
		last := seen[len(seen)-1]
		if last.Get(contract.HeaderMuxAuth) != "" {
			t.Errorf("cluster %s got %s: the mux must drop the front hop's secret", cluster, contract.HeaderMuxAuth)
		}
		if last.Get(contract.HeaderMux) != "" || last.Get("Mcp-Session-Id") == "" || last.Get("Mcp-Session-Id") == cs.ID() {
			t.Errorf("cluster %s request headers %v: want the target's own Mcp-Session-Id and no %s", cluster, last, contract.HeaderMux)
		}
		if last.Get("Mcp-Protocol-Version") != init.ProtocolVersion {
			t.Errorf("cluster %s: Mcp-Protocol-Version %q, want the negotiated %q", cluster, last.Get("Mcp-Protocol-Version"), init.ProtocolVersion)
		}
	}
}

// TestMuxServerRequests: a target's requests to the client (elicitation) inside a call's stream
// reach the client, and its answer reaches that target; progress notifications stream through.
func TestMuxServerRequests(t *testing.T) {
	gw := newGateway(t, "FailClosed", targetA, targetB)
	rec, opts := newAnswering()
	cs, err := connect(t, gw.url, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := callText(t, cs, "b_ask", nil); got != "b heard accept green" {
		t.Errorf("tools/call b_ask: %q, want b's answer with the client's", got)
	}
	callCount(t, cs, "a_count", "tok")
	if asked := rec.elicitations(); !slices.Equal(asked, []string{"your color? (b)"}) {
		t.Errorf("elicitations %q: want b's one", asked)
	}
	wantProgress(t, rec.progress, "a")
}

// answering is a client that accepts every elicitation with the color green and records what
// it was asked and the progress messages it got.
type answering struct {
	mu       sync.Mutex
	asked    []string
	progress chan string
}

// newAnswering returns an answering client's record and its options.
func newAnswering() (*answering, *mcp.ClientOptions) {
	a := &answering{progress: make(chan string, 3)}
	return a, &mcp.ClientOptions{
		ElicitationHandler: func(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			a.mu.Lock()
			a.asked = append(a.asked, req.Params.Message)
			a.mu.Unlock()
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"color": "green"}}, nil
		},
		ProgressNotificationHandler: func(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
			a.progress <- req.Params.Message
		},
	}
}

// elicitations returns the messages of the elicitations the client was asked so far.
func (a *answering) elicitations() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.asked)
}

// callText calls tool with args and returns the text of its result.
func callText(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) string {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("tools/call %s: %v", tool, err)
	}
	return text(t, res)
}

// callCount calls tool, a target's count, with the progress token token.
func callCount(t *testing.T, cs *mcp.ClientSession, tool string, token any) {
	t.Helper()
	params := &mcp.CallToolParams{Name: tool}
	params.SetProgressToken(token)
	if res, err := cs.CallTool(context.Background(), params); err != nil || res.IsError {
		t.Fatalf("tools/call %s = %+v, %v", tool, res, err)
	}
}

// wantProgress receives the three progress messages of target's count tool. They come before
// the answer in its stream; the client hands them to its handler in order, maybe after it
// returned the answer.
func wantProgress(t *testing.T, progress <-chan string, target string) {
	t.Helper()
	for i := 1; i <= 3; i++ {
		if got, want := receive(t, progress, fmt.Sprintf("progress %d", i)), fmt.Sprintf("%s step %d", target, i); got != want {
			t.Errorf("progress %d: %q, want %q", i, got, want)
		}
	}
}

// wantTools lists the session's tools and checks their names (sorted) are want.
func wantTools(t *testing.T, cs *mcp.ClientSession, want ...string) *mcp.ListToolsResult {
	t.Helper()
	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	if slices.Sort(names); !slices.Equal(names, want) {
		t.Errorf("tools/list: %q, want %q", names, want)
	}
	return tools
}

// TestMuxHungTarget: a target that never answers what the mux sends every target (initialize,
// a list) fails after Options.TargetTimeout: under FailOpen the others answer without it, under
// FailClosed the error names it and the bound; the request never hangs.
func TestMuxHungTarget(t *testing.T) {
	hang := contract.MuxTarget{Name: "h", Cluster: "cluster-hang", Path: "/mcp"}
	hangLists := contract.MuxTarget{Name: "h", Cluster: "cluster-hang-lists", Path: "/mcp"}
	short := func(o *mux.Options) { o.TargetTimeout = 300 * time.Millisecond }
	t.Run("FailOpen initialize", func(t *testing.T) {
		gw := newGatewayWith(t, "FailOpen", short, targetA, hang)
		cs, err := connect(t, gw.url, nil)
		if err != nil {
			t.Fatalf("initialize with target h hung: %v, want a session of a", err)
		}
		wantTools(t, cs, "a_ask", "a_count", "a_whoami", "a_x")
	})
	t.Run("FailOpen tools/list", func(t *testing.T) {
		gw := newGatewayWith(t, "FailOpen", short, targetA, hangLists)
		cs, err := connect(t, gw.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		wantTools(t, cs, "a_ask", "a_count", "a_whoami", "a_x")
	})
	t.Run("FailClosed tools/list", func(t *testing.T) {
		gw := newGatewayWith(t, "FailClosed", short, targetA, hangLists)
		cs, err := connect(t, gw.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.ListTools(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "target h: no answer within 300ms") {
			t.Errorf("tools/list with target h hung: %v, want an error naming h and the bound", err)
		}
	})
}

func TestMuxFailureModes(t *testing.T) {
	t.Run("FailClosed", func(t *testing.T) {
		gw := newGateway(t, "FailClosed", targetA, targetDown)
		_, err := connect(t, gw.url, nil)
		if err == nil || !strings.Contains(err.Error(), "target c: HTTP 503") {
			t.Fatalf("initialize with target c down: %v, want an error naming c and its 503", err)
		}
		// a's session, opened for nothing, was ended.
		gw.double.mu.Lock()
		defer gw.double.mu.Unlock()
		var methods []string
		for _, h := range gw.double.seen["cluster-a"] {
			// The client's server/discover (MCP 2026-07-28) goes to every target too.
			if h.Get("Mcp-Method") != "server/discover" {
				methods = append(methods, "req")
			}
		}
		if len(methods) != 2 {
			t.Errorf("cluster-a got %d requests, want initialize and the DELETE that ends its session", len(methods))
		}
	})
	t.Run("FailOpen", func(t *testing.T) {
		gw := newGateway(t, "FailOpen", targetA, targetDown)
		cs, err := connect(t, gw.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		tools, err := cs.ListTools(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, tool := range tools.Tools {
			if !strings.HasPrefix(tool.Name, "a_") {
				t.Errorf("tools/list lists %s: want only a's tools", tool.Name)
			}
		}
		if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "c_x"}); err == nil || !strings.Contains(err.Error(), "Unknown tool: c_x") {
			t.Errorf("tools/call c_x, c not in the session: %v, want Unknown tool", err)
		}
	})
	t.Run("FailOpenAllDown", func(t *testing.T) {
		gw := newGateway(t, "FailOpen", targetDown, contract.MuxTarget{Name: "d", Cluster: "down", Path: "/mcp"})
		if _, err := connect(t, gw.url, nil); err == nil {
			t.Fatal("initialize with every target down: want an error")
		}
	})
}

// post sends one raw request to the gateway.
func post(t *testing.T, url, session, body string) (*http.Response, string) {
	t.Helper()
	return postWith(t, url, session, body, nil)
}

// postWith is post with the request headers headers.
func postWith(t *testing.T, url, session, body string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestMuxRawRequests(t *testing.T) {
	gw := newGateway(t, "FailClosed", targetA, targetB)
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	resp, body := post(t, gw.url, "", init)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d %s, session %q", resp.StatusCode, body, sid)
	}
	raw, err := base64.RawURLEncoding.DecodeString(sid)
	var sess struct {
		Backend string            `json:"backend"`
		Targets map[string]string `json:"targets"`
	}
	ids := map[string]string{}
	if err == nil && json.Unmarshal(raw, &sess) == nil {
		ids = sess.Targets
	}
	if sess.Backend != "ns/be" || len(ids) != 2 || ids["a"] == "" || ids["b"] == "" {
		t.Fatalf("session id %q (%s): want base64url of the backend and each target's own id", sid, raw)
	}
	if !strings.Contains(body, `"protocolVersion":"2025-06-18"`) {
		t.Errorf("initialize answer %s: want the version both targets chose", body)
	}

	forgedOn := func(backend string, v map[string]string) string {
		b, _ := json.Marshal(map[string]any{"backend": backend, "targets": v})
		return base64.RawURLEncoding.EncodeToString(b)
	}
	forged := func(v map[string]string) string { return forgedOn("ns/be", v) }
	for name, c := range map[string]struct {
		session, body string
		status        int
		want          string
	}{
		"unknown target": {forged(map[string]string{"a": ids["a"], "z": "1"}), `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, 404, `"code":-32001`},
		"no target":      {forged(map[string]string{}), `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, 404, `"code":-32001`},
		// The same targets' ids, named for another backend (whose targets may share the names).
		"other backend":   {forgedOn("ns/other", ids), `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, 404, `"code":-32001`},
		"no backend":      {forgedOn("", ids), `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, 404, `"code":-32001`},
		"old format":      {base64.RawURLEncoding.EncodeToString([]byte(`{"a":"` + ids["a"] + `","b":"` + ids["b"] + `"}`)), `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, 404, `"code":-32001`},
		"not base64":      {"!!", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, 404, `"code":-32001`},
		"no session":      {"", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, 400, `"code":-32600`},
		"batch":           {sid, `[{"jsonrpc":"2.0","id":2,"method":"tools/list"}]`, 400, `batches are not supported`},
		"not JSON":        {sid, `{"jsonrpc"`, 400, `"code":-32700`},
		"neither":         {sid, `{"jsonrpc":"2.0"}`, 400, `"code":-32600`},
		"bad response id": {sid, `{"jsonrpc":"2.0","id":"mcpgate-mux:z:1","result":{}}`, 400, `"code":-32600`},
		"unknown method":  {sid, `{"jsonrpc":"2.0","id":3,"method":"tasks/list"}`, 200, `"code":-32601`},
		"unnamed call":    {sid, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":7}}`, 200, `"code":-32602`},
		"ping":            {"", `{"jsonrpc":"2.0","id":"p","method":"ping"}`, 200, `{"jsonrpc":"2.0","id":"p","result":{}}`},
		"progress":        {sid, `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"a_count","arguments":{},"_meta":{"progressToken":"tok"}}}`, 200, `step 3`},
		"unknown tool":    {sid, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"zz_x"}}`, 200, `"message":"Unknown tool: zz_x"`},
		// a's session id for b: b does not know it, and the client has to start anew.
		"stale session": {forged(map[string]string{"b": ids["a"]}), `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"b_y","arguments":{"text":"t"}}}`, 404, `"code":-32001`},
	} {
		resp, got := post(t, gw.url, c.session, c.body)
		if resp.StatusCode != c.status || !strings.Contains(got, c.want) {
			t.Errorf("%s: %d %s, want %d with %s", name, resp.StatusCode, got, c.status, c.want)
		}
	}

	req, _ := http.NewRequest(http.MethodPut, gw.url, nil)
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, POST, DELETE" {
		t.Errorf("PUT: %d Allow %q, want 405 naming GET, POST and DELETE", resp.StatusCode, resp.Header.Get("Allow"))
	}

	req, _ = http.NewRequest(http.MethodDelete, gw.url, nil)
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE: %d, want 204", resp.StatusCode)
	}
	// The targets ended their sessions.
	resp, got := post(t, gw.url, sid, `{"jsonrpc":"2.0","id":6,"method":"tools/list"}`)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("tools/list after DELETE: %d %s, want 404", resp.StatusCode, got)
	}
}

func TestMuxRefusesBadDescription(t *testing.T) {
	h := mux.New(mux.Options{Upstream: func(string) string { return "unix:///nonexistent" }, Secret: testSecret})
	for _, desc := range []string{
		"",
		"{",
		`{"gateway":"ns/gw","targets":[]}`,
		`{"gateway":"ns/gw","targets":[{"name":"a_b","cluster":"c","path":"/mcp"}]}`,
		`{"gateway":"ns/gw","targets":[{"name":"a","cluster":"c","path":"/mcp"},{"name":"a","cluster":"d","path":"/mcp"}]}`,
		`{"gateway":"ns/gw","targets":[{"name":"a","cluster":"","path":"/mcp"}]}`,
		`{"gateway":"ns/gw","targets":[{"name":"a","cluster":"c","path":"mcp"}]}`,
		`{"gateway":"ns/gw","failureMode":"Sometimes","targets":[{"name":"a","cluster":"c","path":"/mcp"}]}`,
		`{"gateway":"ns/gw","bridge":true,"targets":[{"name":"a","cluster":"c","path":"/sse","protocol":"sse"},{"name":"b","cluster":"d","path":"/mcp"}]}`,
		`{"gateway":"ns/gw","targets":[{"name":"a","cluster":"c","path":"/ws","protocol":"websocket"}]}`,
	} {
		req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		if desc != "" {
			req.Header.Set(contract.HeaderMux, desc)
		}
		req.Header.Set(contract.HeaderMuxAuth, testSecret)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), contract.HeaderMux) {
			t.Errorf("description %q: %d %q, want 400 naming %s", desc, rec.Code, rec.Body.String(), contract.HeaderMux)
		}
	}
}

// TestMuxRefusesWithoutSecret: a request without the front hop's secret (contract.HeaderMuxAuth)
// is refused before anything else, whatever backend description it forges, and the refusal is
// logged once per reason without the value sent.
func TestMuxRefusesWithoutSecret(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "up.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var reached sync.Mutex
	hits := 0
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Lock()
		hits++
		reached.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"t","version":"1"}}}`)
	})}
	go up.Serve(lis)
	t.Cleanup(func() { up.Close() })
	var logs strings.Builder
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	desc := `{"gateway":"ns/gw","backend":"ns/be","targets":[{"name":"a","cluster":"any-cluster","path":"/admin"}]}`
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	serve := func(h http.Handler, auth ...string) int {
		req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(initialize))
		req.Header.Set(contract.HeaderMux, desc)
		for _, v := range auth {
			req.Header.Add(contract.HeaderMuxAuth, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if strings.Contains(rec.Body.String(), "xyzzy") {
			t.Errorf("answer %q echoes the value sent", rec.Body.String())
		}
		return rec.Code
	}
	h := mux.New(mux.Options{Upstream: func(string) string { return "unix://" + sock }, Secret: testSecret, Logger: log})
	for name, auth := range map[string][]string{
		"none":     nil,
		"empty":    {""},
		"wrong":    {"xyzzy-1"},
		"prefix":   {testSecret[:len(testSecret)-1]},
		"longer":   {testSecret + "x"},
		"repeated": {testSecret, "xyzzy-2"},
	} {
		for range 2 {
			if code := serve(h, auth...); code != http.StatusForbidden {
				t.Errorf("%s: %d, want 403", name, code)
			}
		}
	}
	if code := serve(mux.New(mux.Options{Upstream: func(string) string { return "unix://" + sock }}), ""); code != http.StatusForbidden {
		t.Errorf("a mux without a secret, a request with an empty one: %d, want 403", code)
	}
	reached.Lock()
	if hits != 0 {
		t.Errorf("the upstream got %d requests: want none before the secret is checked", hits)
	}
	reached.Unlock()
	if code := serve(h, testSecret); code != http.StatusOK {
		t.Errorf("with the secret: %d, want 200", code)
	}
	logMu.Lock()
	defer logMu.Unlock()
	out := logs.String()
	if strings.Contains(out, "xyzzy") || strings.Contains(out, testSecret) {
		t.Errorf("log %q shows a value sent or the secret", out)
	}
	// none, wrong (empty, wrong, prefix, longer), repeated: once each.
	if n := strings.Count(out, "request refused"); n != 3 {
		t.Errorf("log has %d refusals, want one per reason (3):\n%s", n, out)
	}
}

// writerFunc is an io.Writer of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
