package extproc

import (
	"bytes"
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
	got := roundTrip(t, r)
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

// TestRepliesCarryOnlyTheirMetadata: the replies of a stream (and of the streams that recycle its
// storage) share the metadata encoding's storage: each reply carries its own metadata and nothing
// of an earlier reply's.
func TestRepliesCarryOnlyTheirMetadata(t *testing.T) {
	var rs replies
	decode := func(r *extprocv3.ProcessingResponse) *structpb.Struct {
		t.Helper()
		return roundTrip(t, r).GetDynamicMetadata()
	}
	var first metadata
	first.str("session", "S1")
	first.str("tool", "fetch")
	first.str("decision", "allow")
	if got := decode(rs.headersReply(true, nil, first)); len(got.GetFields()["mcpgate"].GetStructValue().GetFields()) != 3 {
		t.Fatalf("first reply's metadata = %v", got)
	}
	second := answerMetadata()
	second.str("outcome", "result")
	want, err := structpb.NewStruct(map[string]any{"mcpgate": map[string]any{"outcome": "result"}})
	if err != nil {
		t.Fatal(err)
	}
	r := rs.bodyReply(false, nil, false, false, second)
	if got := decode(r); !proto.Equal(want, got) {
		t.Errorf("second reply's metadata = %v\nwant %v", got, want)
	}
	// Nor the bytes of one: a map entry decoded twice keeps the last, so an earlier encoding left
	// before this one would not show in the decoded metadata, only in each reply's size.
	var fresh replies
	if got, want := r.ProtoReflect().GetUnknown(), fresh.bodyReply(false, nil, false, false, second).ProtoReflect().GetUnknown(); !bytes.Equal(got, want) {
		t.Errorf("second reply's metadata encoding is %d bytes, want %d", len(got), len(want))
	}
	if got := decode(rs.headersReply(false, nil, metadata{})); got != nil {
		t.Errorf("a reply without metadata carries %v", got)
	}
}

// roundTrip returns r as a receiver decodes it: its metadata, carried as unknown fields, decoded.
func roundTrip(t *testing.T, r *extprocv3.ProcessingResponse) *extprocv3.ProcessingResponse {
	t.Helper()
	wire, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got extprocv3.ProcessingResponse
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

// TestContentLength: only a number of bytes is a length; an answer without one (chunked) or with
// a value that is not one is unsized, and so asked for in BUFFERED_PARTIAL, never BUFFERED.
func TestContentLength(t *testing.T) {
	const unsized = -100
	for v, want := range map[string]int64{"": unsized, "0": 0, "52": 52, "-1": unsized, "abc": unsized, "1e3": unsized} {
		n, ok := contentLength(v)
		if !ok {
			n = unsized
		}
		if n != want {
			t.Errorf("contentLength(%q) = %d, %v; want %d (%d: unsized)", v, n, ok, want, unsized)
		}
	}
}
