package accesslog_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpgate/mcpgate/test/envoydouble/accesslog"
	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
)

func TestJSONFormat(t *testing.T) {
	s, _ := structpb.NewStruct(map[string]any{
		"code": "%RESPONSE_CODE%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "missing": "%RESP(X-NONE)%",
		"flags": "%RESPONSE_FLAGS%", "tool": "%DYNAMIC_METADATA(mcpgate:tool)%", "args": "%DYNAMIC_METADATA(mcpgate:arguments)%",
		"short": "%DYNAMIC_METADATA(mcpgate:tool):3%", "mixed": "[%RESPONSE_CODE%] %RESP(X-NONE)%", "start": "%START_TIME%",
		"nested": map[string]any{"method": "%REQ(:METHOD)%"}, "literal": 7,
	})
	f, err := accesslog.Compile(s, "json_format")
	if err != nil {
		t.Fatal(err)
	}
	req := &headers.Map{}
	req.Add(":path", "/new")
	req.Add("x-envoy-original-path", "/old")
	req.Add(":method", "POST")
	md, _ := structpb.NewStruct(map[string]any{"tool": "fetch", "arguments": map[string]any{"url": "http://x"}})
	line := f.Render(&accesslog.Info{Start: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC), Request: req, Response: &headers.Map{}, Code: 200,
		Metadata: map[string]*structpb.Struct{"mcpgate": md}})
	if !strings.HasSuffix(string(line), "}\n") {
		t.Errorf("not one line: %q", line)
	}
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"code": 200.0, "path": "/old", "missing": nil, "flags": "-", "tool": "fetch",
		"args": map[string]any{"url": "http://x"}, "short": "fet", "mixed": "[200] -", "start": "2026-01-02T03:04:05.006Z",
		"nested": map[string]any{"method": "POST"}, "literal": 7.0}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("got  %s\nwant %s", gj, wj)
	}
}

// TestMetadataTypes: %METADATA(TYPE:NS:KEY)% reads the request's dynamic metadata, the route's
// or the upstream cluster's; what one lacks is null, and another type's fields are not seen.
func TestMetadataTypes(t *testing.T) {
	s, _ := structpb.NewStruct(map[string]any{
		"dyn": "%METADATA(DYNAMIC:mcpgate:k)%", "route": "%METADATA(ROUTE:mcpgate:k)%", "cluster": "%METADATA(CLUSTER:mcpgate:k)%",
		"deep": "%METADATA(ROUTE:mcpgate:obj:inner)%", "not_obj": "%METADATA(CLUSTER:mcpgate:k:inner)%",
	})
	f, err := accesslog.Compile(s, "json_format")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		info accesslog.Info
		want string
	}{
		{"all", accesslog.Info{Metadata: mcpgateNS(map[string]any{"k": "d"}), RouteMetadata: mcpgateNS(map[string]any{"k": "r", "obj": map[string]any{"inner": 2}}),
			ClusterMetadata: mcpgateNS(map[string]any{"k": "c"})},
			`{"cluster":"c","deep":2,"dyn":"d","not_obj":null,"route":"r"}`},
		{"route only", accesslog.Info{RouteMetadata: mcpgateNS(map[string]any{"k": "r"})},
			`{"cluster":null,"deep":null,"dyn":null,"not_obj":null,"route":"r"}`},
		{"none", accesslog.Info{}, `{"cluster":null,"deep":null,"dyn":null,"not_obj":null,"route":null}`},
	} {
		if got := renderJSON(t, f, &c.info); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
}

func TestRefusesUnknownOperators(t *testing.T) {
	for _, v := range []string{"%UPSTREAM_TRANSPORT_FAILURE_REASON%", "%START_TIME(%s)%", "%REQ%", "50%",
		"%METADATA%", "%METADATA(UPSTREAM_HOST:ns:k)%", "%METADATA(route:ns:k)%"} {
		s, _ := structpb.NewStruct(map[string]any{"x": v})
		if _, err := accesslog.Compile(s, "json_format"); err == nil || !strings.Contains(err.Error(), "json_format.x") {
			t.Errorf("%q: got %v, want an error naming json_format.x", v, err)
		}
	}
}

// TestReqWithoutQuery: %REQ_WITHOUT_QUERY(...)% is known only to a format whose formatters add
// it; it is %REQ(...)% cut at the first '?', then to its length.
func TestReqWithoutQuery(t *testing.T) {
	s, _ := structpb.NewStruct(map[string]any{
		"path": "%REQ_WITHOUT_QUERY(:PATH)%", "orig": "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"short": "%REQ_WITHOUT_QUERY(:PATH):4%", "none": "%REQ_WITHOUT_QUERY(X-NONE)%", "text": "p=%REQ_WITHOUT_QUERY(X-NONE)%",
	})
	if _, err := accesslog.Compile(s, "json_format"); err == nil || !strings.Contains(err.Error(), "REQ_WITHOUT_QUERY") {
		t.Errorf("without the formatter: %v, want REQ_WITHOUT_QUERY refused", err)
	}
	f, err := accesslog.Compile(s, "json_format", accesslog.ReqWithoutQuery)
	if err != nil {
		t.Fatal(err)
	}
	req := &headers.Map{}
	req.Add(":path", "/sse?access_token=SECRET&x=1")
	line := string(f.Render(&accesslog.Info{Request: req}))
	if want := `{"none":null,"orig":"/sse","path":"/sse","short":"/sse","text":"p=-"}` + "\n"; line != want {
		t.Errorf("got  %swant %s", line, want)
	}
}

// TestCoalesce: %COALESCE({"operators":[...]})% is the first of its operators' values that is
// neither unavailable, null nor an empty string (Envoy's CoalesceFormatter::formatValue), typed
// as that operator writes it, a string cut to the COALESCE's length; unavailable when none has
// one. Each operator is a command name or {"command","param","max_length"}.
func TestCoalesce(t *testing.T) {
	const backend = `%COALESCE({"operators":[{"command":"METADATA","param":"CLUSTER:mcpgate:backend"},{"command":"METADATA","param":"DYNAMIC:mcpgate:backend"}]})%`
	s, _ := structpb.NewStruct(map[string]any{
		"backend": backend,
		"host":    `%COALESCE({"operators":["UPSTREAM_HOST",{"command":"REQ","param":"x-empty"},{"command":"REQ","param":":authority","max_length":4}]})%`,
		"code":    `%COALESCE({"operators":[{"command":"RESP","param":"x-none"},"RESPONSE_CODE"]})%`,
		"short":   `%COALESCE({"operators":[{"command":"DYNAMIC_METADATA","param":"mcpgate:backend"}]}):3%`,
		"text":    `b=` + backend,
	})
	f, err := accesslog.Compile(s, "json_format")
	if err != nil {
		t.Fatal(err)
	}
	req := &headers.Map{}
	req.Add(":authority", "example.com")
	req.Add("x-empty", "")
	for _, c := range []struct {
		name string
		info accesslog.Info
		want string
	}{
		{"the cluster's first", accesslog.Info{Request: req, Code: 200, UpstreamHost: "10.0.0.1:80",
			ClusterMetadata: mcpgateNS(map[string]any{"backend": "ns/cluster"}), Metadata: mcpgateNS(map[string]any{"backend": "ns/dynamic"})},
			`{"backend":"ns/cluster","code":200,"host":"10.0.0.1:80","short":"ns/","text":"b=ns/cluster"}`},
		{"the cluster's missing, null or empty: the dynamic one", accesslog.Info{Request: req, Code: 200,
			ClusterMetadata: mcpgateNS(map[string]any{"backend": nil}), Metadata: mcpgateNS(map[string]any{"backend": "ns/dynamic"})},
			`{"backend":"ns/dynamic","code":200,"host":"exam","short":"ns/","text":"b=ns/dynamic"}`},
		{"empty string skipped", accesslog.Info{Request: req, ClusterMetadata: mcpgateNS(map[string]any{"backend": ""}),
			Metadata: mcpgateNS(map[string]any{"backend": "ns/dynamic"})},
			`{"backend":"ns/dynamic","code":0,"host":"exam","short":"ns/","text":"b=ns/dynamic"}`},
		{"none", accesslog.Info{}, `{"backend":null,"code":0,"host":null,"short":null,"text":"b=-"}`},
	} {
		if got := renderJSON(t, f, &c.info); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}

	// Refused as Envoy refuses them, and what the double does not reproduce (a formatter
	// extension's command: Envoy looks up only the built-in ones).
	for v, want := range map[string]string{
		`%COALESCE%`:                                "needs an argument",
		`%COALESCE(not json)%`:                      "failed to parse JSON",
		`%COALESCE({"ops":[]})%`:                    "must contain 'operators'",
		`%COALESCE({"operators":[]})%`:              "must not be empty",
		`%COALESCE({"operators":[7]})%`:             "operator at index 0",
		`%COALESCE({"operators":[{"param":"x"}]})%`: "operator at index 0",
		`%COALESCE({"operators":["NO_SUCH"]})%`:     "NO_SUCH",
		`%COALESCE({"operators":["REQ"]})%`:         "needs an argument",
		`%COALESCE({"operators":[{"command":"REQ","param":"x","max_length":0}]})%`:    "max_length",
		`%COALESCE({"operators":[{"command":"REQ_WITHOUT_QUERY","param":":path"}]})%`: "REQ_WITHOUT_QUERY",
	} {
		s, _ := structpb.NewStruct(map[string]any{"x": v})
		if _, err := accesslog.Compile(s, "json_format", accesslog.ReqWithoutQuery); err == nil ||
			!strings.Contains(err.Error(), "json_format.x") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error naming json_format.x and %q", v, err, want)
		}
	}
}

// mcpgateNS is metadata with fields in the namespace mcpgate.
func mcpgateNS(fields map[string]any) map[string]*structpb.Struct {
	st, _ := structpb.NewStruct(fields)
	return map[string]*structpb.Struct{"mcpgate": st}
}

// renderJSON is f's line for info, its keys sorted.
func renderJSON(t *testing.T, f *accesslog.Format, info *accesslog.Info) string {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(f.Render(info), &got); err != nil {
		t.Fatal(err)
	}
	gj, _ := json.Marshal(got)
	return string(gj)
}
