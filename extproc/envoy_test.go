package extproc

import (
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestMetadataEncoding: the hand-encoded dynamic_metadata decodes to the Struct structpb would
// build.
func TestMetadataEncoding(t *testing.T) {
	var md metadata
	md.str("route", "ns/r/rule/0")
	md.str("empty", "")
	md.str("tool", "fetch – résumé "+string(make([]byte, 300)))
	md.num("jsonrpc_error", -32602)
	md.str("decision", "allow")
	md.replace("decision", "deny")
	md.str("rule", "x")
	md.replace("rule", "")
	var rs replies
	r := rs.bodyReply(true, nil, false, false, md)
	wire, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got extprocv3.ProcessingResponse
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	want, err := structpb.NewStruct(map[string]any{"mcpgate": map[string]any{
		"route": "ns/r/rule/0", "tool": "fetch – résumé " + string(make([]byte, 300)), "jsonrpc_error": -32602, "decision": "deny",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(want, got.GetDynamicMetadata()) {
		t.Errorf("metadata = %v\nwant %v", got.GetDynamicMetadata(), want)
	}
	if got.GetRequestBody() == nil {
		t.Error("the reply kind was lost")
	}
	var none metadata
	if r := none.attach(&extprocv3.ProcessingResponse{}); len(r.ProtoReflect().GetUnknown()) != 0 {
		t.Error("empty metadata encoded")
	}
}
