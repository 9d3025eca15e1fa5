package extprocfilter

import (
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// TestReplyAfterProcessingDropped: as Envoy's onReceiveMessage, a reply that comes once
// processing is over (here a message timeout's failure) is dropped, its dynamic metadata too;
// one that comes while processing goes on but fits no state is spurious, and its dynamic
// metadata is written before that is found.
func TestReplyAfterProcessingDropped(t *testing.T) {
	dm, err := structpb.NewStruct(map[string]any{"mcpgate": map[string]any{"tool": "late"}})
	if err != nil {
		t.Fatal(err)
	}
	reply := &extprocsvc.ProcessingResponse{DynamicMetadata: dm,
		Response: &extprocsvc.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocsvc.HeadersResponse{}}}
	for _, over := range []bool{false, true} {
		md := &Metadata{}
		s := New(Params{Filter: &xdsconf.ExtProc{Mode: &extprocv3.ProcessingMode{},
			Metadata: xdsconf.MetadataOptions{ReceivingUntyped: []string{"mcpgate"}}}, Metadata: md})
		if over {
			s.fail(&Failure{Status: 504, Details: "ext_proc_error_per-message_timeout_exceeded"})
		}
		s.handle(reply)
		_, written := md.Snapshot()["mcpgate"]
		if written == over {
			t.Errorf("processing over %v: metadata written %v, want %v", over, written, !over)
		}
	}
}
