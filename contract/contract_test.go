package contract

import (
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
