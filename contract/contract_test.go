package contract

import (
	"net/http"
	"reflect"
	"testing"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

func TestPolicyTypeURLNamesTheProto(t *testing.T) {
	want := "type.googleapis.com/" + string((&policyv1.Policy{}).ProtoReflect().Descriptor().FullName())
	if PolicyTypeURL != want {
		t.Fatalf("PolicyTypeURL = %q, the proto's is %q", PolicyTypeURL, want)
	}
}

func TestSplitAddress(t *testing.T) {
	for addr, want := range map[string]string{
		"unix:///run/x.sock": "unix /run/x.sock",
		"127.0.0.1:18002":    "tcp 127.0.0.1:18002",
		":0":                 "tcp :0",
		"[::1]:80":           "tcp [::1]:80",
		"localhost:65535":    "tcp localhost:65535",
		// Refused.
		"unix://x.sock":    "",
		"unix://":          "",
		"/run/x.sock":      "",
		"host":             "",
		"host:http":        "",
		"host:65536":       "",
		"":                 "",
		"unix:/run/x.sock": "",
	} {
		network, a, err := SplitAddress(addr)
		got := ""
		if err == nil {
			got = network + " " + a
		}
		if got != want || (err == nil) != (want != "") {
			t.Errorf("SplitAddress(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
}

// TestHeaderChangesApply: a route's request header changes as Envoy's router applies them:
// removes first, then the sets (in order, the last of a name winning), then the appends, whatever
// their order in request_headers_to_add; empty values are skipped; names in any letter case.
func TestHeaderChangesApply(t *testing.T) {
	h := http.Header{}
	h.Add("Cookie", "c=1")
	h.Add("X-Api-Key", "client")
	h.Add("X-Env", "client")
	h.Add("X-Keep", "k")
	c := &HeaderChanges{
		Remove: []string{"cookie", "x-gone"},
		Add: []HeaderAdd{
			{Name: "x-env", Value: "a", Append: true},
			{Name: "X-API-KEY", Value: "route"},
			{Name: "x-env", Value: "set"},
			{Name: "x-empty", Value: ""},
			{Name: "x-empty", Value: "", Append: true},
			{Name: "x-new", Value: "n", Append: true},
		},
	}
	c.Apply(h)
	want := http.Header{"X-Api-Key": {"route"}, "X-Env": {"set", "a"}, "X-Keep": {"k"}, "X-New": {"n"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("Apply = %v, want %v", h, want)
	}
	var none *HeaderChanges
	none.Apply(h) // nil changes nothing
	if !reflect.DeepEqual(h, want) {
		t.Errorf("nil Apply changed the headers: %v", h)
	}
}

// TestIsCredentialName: a name is a credential's when, folded, it ends with a credential key.
func TestIsCredentialName(t *testing.T) {
	for name, want := range map[string]bool{
		"Authorization": true, "Proxy-Authorization": true, "Cookie": true, "X-Api-Key": true, "x-goog-api-key": true,
		"api-key": true, "X-Auth-Token": true, "PRIVATE-TOKEN": true, "github_token": true, "accessToken": true,
		"X-Max-Tokens": false, "token_count": false, "keyword": false, "monkey": false, "content-type": false, "": false,
	} {
		if got := IsCredentialName(name); got != want {
			t.Errorf("IsCredentialName(%q) = %v, want %v", name, got, want)
		}
	}
}
