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
	ns := func(fields map[string]any) map[string]*structpb.Struct {
		st, _ := structpb.NewStruct(fields)
		return map[string]*structpb.Struct{"mcpgate": st}
	}
	for _, c := range []struct {
		name string
		info accesslog.Info
		want string
	}{
		{"all", accesslog.Info{Metadata: ns(map[string]any{"k": "d"}), RouteMetadata: ns(map[string]any{"k": "r", "obj": map[string]any{"inner": 2}}),
			ClusterMetadata: ns(map[string]any{"k": "c"})},
			`{"cluster":"c","deep":2,"dyn":"d","not_obj":null,"route":"r"}`},
		{"route only", accesslog.Info{RouteMetadata: ns(map[string]any{"k": "r"})},
			`{"cluster":null,"deep":null,"dyn":null,"not_obj":null,"route":"r"}`},
		{"none", accesslog.Info{}, `{"cluster":null,"deep":null,"dyn":null,"not_obj":null,"route":null}`},
	} {
		var got map[string]any
		if err := json.Unmarshal(f.Render(&c.info), &got); err != nil {
			t.Fatal(err)
		}
		if gj, _ := json.Marshal(got); string(gj) != c.want {
			t.Errorf("%s: got %s, want %s", c.name, gj, c.want)
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
