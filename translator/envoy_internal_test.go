package translator

import (
	"bytes"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/contract"
	"google.golang.org/protobuf/proto"
)

// TestEncodePerRoute: the hand encoding equals proto.Marshal of the same message.
func TestEncodePerRoute(t *testing.T) {
	long := string(bytes.Repeat([]byte("x"), 300)) // lengths over 127 take two varint bytes
	for _, mcp := range []bool{false, true} {
		for _, md := range [][][2]string{
			{{contract.MetadataGateway, "ns/gw"}, {contract.MetadataRoute, "ns/r/rule/0"}, {contract.MetadataPolicy, ""}, {contract.MetadataMCP, ""}},
			{{contract.MetadataGateway, "ns/gw"}, {contract.MetadataRoute, "ns/r/rule/1"}, {contract.MetadataPolicy, long}, {contract.MetadataMCP, "sse"},
				{contract.MetadataBackend, "ns/b"}, {contract.MetadataTarget, "t"}},
		} {
			mode := processingMode(mcp)
			want := &extprocv3.ExtProcPerRoute{Override: &extprocv3.ExtProcPerRoute_Overrides{
				Overrides: &extprocv3.ExtProcOverrides{ProcessingMode: mode}}}
			for _, kv := range md {
				if kv[1] != "" {
					want.GetOverrides().GrpcInitialMetadata = append(want.GetOverrides().GrpcInitialMetadata, &corev3.HeaderValue{Key: kv[0], Value: kv[1]})
				}
			}
			wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			got := encodePerRoute(mustMarshal(mode), md)
			if !bytes.Equal(got, wantBytes) {
				t.Fatalf("mcp=%v: encoding differs from proto.Marshal:\n got %x\nwant %x", mcp, got, wantBytes)
			}
			back := &extprocv3.ExtProcPerRoute{}
			if err := proto.Unmarshal(got, back); err != nil || !proto.Equal(back, want) {
				t.Fatalf("mcp=%v: decodes to %v (%v), want %v", mcp, back, err, want)
			}
		}
	}
}

// TestMCPResponseBodyModeNone: an MCP route sends ext_proc no response body until ext_proc's reply
// to the response headers chooses one (mode_override). With BUFFERED here, Envoy would buffer an
// answer arriving before that reply and answer 500 past the buffer limit, whatever the override
// says (envoydouble's TestResponseBodyArrivingBeforeTheHeadersReply shows both).
func TestMCPResponseBodyModeNone(t *testing.T) {
	m := processingMode(true)
	if m.GetResponseBodyMode() != extprocv3.ProcessingMode_NONE || m.GetResponseHeaderMode() != extprocv3.ProcessingMode_SEND ||
		m.GetRequestBodyMode() != extprocv3.ProcessingMode_BUFFERED {
		t.Fatalf("MCP processing mode %v: want request body BUFFERED, response headers SEND, response body NONE", m)
	}
}

// TestTLSSocketPerSetting: targets share a transport socket only when their whole TLS setting is
// the same: one host with another sni, other names or another verification gets its own.
func TestTLSSocketPerSetting(t *testing.T) {
	x := newXDSCommon(Options{}.withDefaults())
	all, hostname := v1alpha1.InsecureTLSModeAll, v1alpha1.InsecureTLSModeHostname
	sni := "front.example.com"
	settings := []*v1alpha1.BackendTLS{
		nil, // port 443: the host's defaults
		{SNI: &sni},
		{VerifySubjectAltNames: []string{"other.example.com"}},
		{InsecureSkipVerify: &hostname},
		{InsecureSkipVerify: &all},
	}
	seen := map[*corev3.TransportSocket]int{}
	for i, p := range settings {
		s := x.tlsSocket(tlsFor("mcp.example.com", 443, p))
		if j, ok := seen[s]; ok {
			t.Errorf("settings %d and %d share one transport socket", j, i)
		}
		seen[s] = i
		if again := x.tlsSocket(tlsFor("mcp.example.com", 443, p)); again != s {
			t.Errorf("settings %d: a second target with the same setting got another socket", i)
		}
	}
	if x.tlsSocket(tlsFor("other.example.com", 443, nil)) == x.tlsSocket(tlsFor("mcp.example.com", 443, nil)) {
		t.Errorf("two hosts share one transport socket")
	}
}

// TestCheckTLSInsecureModes: insecureSkipVerify is All or Hostname; any other value, the empty
// one included (which tlsFor would take for Hostname), is refused, naming the field.
func TestCheckTLSInsecureModes(t *testing.T) {
	for mode, ok := range map[v1alpha1.InsecureTLSMode]bool{"All": true, "Hostname": true, "": false, "all": false, "None": false} {
		field, msg := checkTLS(&v1alpha1.BackendTLS{InsecureSkipVerify: &mode})
		if got := msg == ""; got != ok || (!ok && field != ".insecureSkipVerify") {
			t.Errorf("insecureSkipVerify %q: field %q, message %q; want accepted %v", mode, field, msg, ok)
		}
	}
}
