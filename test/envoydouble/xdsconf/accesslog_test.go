package xdsconf_test

import (
	"encoding/json"
	"strings"
	"testing"

	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/formatter/metadata/v3"
)

// TestAccessLogFormatters: the double knows %REQ_WITHOUT_QUERY(...)% only in a format whose
// formatters list req_without_query, as Envoy does, and refuses a formatter it does not implement.
func TestAccessLogFormatters(t *testing.T) {
	js := goldenJSON(t, "../../../translator/testdata/lab.out.yaml")
	var out struct {
		Gateways map[string]struct {
			Listeners []json.RawMessage `json:"listeners"`
		} `json:"gateways"`
	}
	if err := json.Unmarshal(js, &out); err != nil {
		t.Fatal(err)
	}
	listener := string(out.Gateways["agentgateway-system/agentgateway"].Listeners[0])
	const formatter = `"formatters":[{"name":"envoy.formatter.req_without_query","typed_config":{"@type":"type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery"}}]`
	if !strings.Contains(listener, formatter) {
		t.Fatalf("the lab's listener has no req_without_query formatter: %s", listener)
	}
	if err := compile("listeners", json.RawMessage(listener)); err != nil {
		t.Fatalf("the lab's listener: %v", err)
	}
	for name, c := range map[string]struct{ from, to, want string }{
		"without the formatter": {formatter + ",", "", "REQ_WITHOUT_QUERY"},
		"another formatter": {"envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery",
			"envoy.extensions.formatter.metadata.v3.Metadata", "formatters[0]: formatter type.googleapis.com/envoy.extensions.formatter.metadata.v3.Metadata not implemented"},
	} {
		changed := strings.Replace(listener, c.from, c.to, 1)
		if changed == listener {
			t.Fatalf("%s: %q not in the listener", name, c.from)
		}
		if err := compile("listeners", json.RawMessage(changed)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
}
