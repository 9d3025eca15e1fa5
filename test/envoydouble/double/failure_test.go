package double_test

import (
	"context"
	"strings"
	"testing"
	"time"

	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// failing is a script that fails according to the request path.
func failing(s *extStream) error {
	m, err := s.recv()
	if err != nil {
		return nil
	}
	path, _ := header(m.GetRequestHeaders().GetHeaders(), ":path")
	switch path {
	case "/mcp/status":
		return status.Error(codes.PermissionDenied, "no way")
	case "/mcp/slow":
		<-s.srv.Context().Done() // never answers
		return nil
	case "/mcp/spurious":
		// A response_headers reply while Envoy waits for request_headers.
		return s.srv.Send(&extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocsvc.HeadersResponse{}}})
	case "/mcp/empty":
		return s.srv.Send(&extprocsvc.ProcessingResponse{})
	case "/mcp/close":
		return nil // closes with OK before answering: processing is complete, traffic continues unmodified
	case "/mcp/extend":
		// override_message_timeout is ignored while max_message_timeout is not set.
		if err := s.srv.Send(&extprocsvc.ProcessingResponse{OverrideMessageTimeout: durationpb.New(time.Minute)}); err != nil {
			return nil
		}
		<-s.srv.Context().Done()
		return nil
	}
	return answer(nil)(s)
}

func TestExtProcFailuresFailClosed(t *testing.T) {
	e := newEnv(t, failing)
	up := jsonUpstream(t)
	mcpSetup(t, e, up.addr, extProcFilter(300*time.Millisecond))
	for path, want := range map[string]struct {
		code    int
		details string
	}{
		"/mcp/status":   {500, "ext_proc_error_gRPC_error_7{no_way}"},
		"/mcp/slow":     {504, "ext_proc_error_per-message_timeout_exceeded"},
		"/mcp/extend":   {504, "ext_proc_error_per-message_timeout_exceeded"},
		"/mcp/spurious": {500, "spurious_message"},
		"/mcp/empty":    {500, "unhandled_message"},
	} {
		t.Run(path, func(t *testing.T) {
			resp, _ := do(t, "POST", e.url(path), strings.NewReader(`{}`))
			if resp.StatusCode != want.code {
				t.Errorf("got %d, want %d", resp.StatusCode, want.code)
			}
			// the access log line is written when the stream ends, which may be after the client
			// has read the whole answer
			waitFor(t, "an access log line for "+path+" with details "+want.details, func() bool {
				for _, l := range e.access.Lines() {
					if strings.Contains(l, `"details":"`+want.details+`"`) && strings.Contains(l, `"path":"`+path+`"`) {
						return true
					}
				}
				return false
			})
		})
	}
	if up.count() != 0 {
		t.Errorf("the upstream saw %d requests; failures must not pass through", up.count())
	}
	t.Run("closed with OK: passes through unmodified", func(t *testing.T) {
		resp, body := do(t, "POST", e.url("/mcp/close"), strings.NewReader(`{"a":1}`))
		if resp.StatusCode != 200 || body != `{"echo":{"a":1}}` || up.count() != 1 {
			t.Errorf("got %d %q, upstream saw %d", resp.StatusCode, body, up.count())
		}
	})
}

func TestExtProcUnreachable(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(map[bool]string{false: "fail closed: 500", true: "failure_mode_allow: passes through"}[failOpen], func(t *testing.T) {
			e := newEnv(t, answer(nil))
			e.ext.srv.Stop()
			up := jsonUpstream(t)
			f := extProcFilter(time.Second)
			f.FailureModeAllow = failOpen
			mcpSetup(t, e, up.addr, f)
			resp, body := do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`))
			want := 500
			if failOpen {
				want = 200
			}
			if resp.StatusCode != want {
				t.Errorf("got %d %q, want %d", resp.StatusCode, body, want)
			}
			if l := e.logs(1)[0]; !failOpen && !strings.HasPrefix(l["details"].(string), "ext_proc_error_gRPC_error_14") {
				t.Errorf("details %v", l["details"])
			}
		})
	}
}

func TestExtProcBackAfterOutage(t *testing.T) {
	// Envoy's gRPC client connects again on the next request once ext_proc is back.
	e := newEnv(t, answer(nil))
	up := jsonUpstream(t)
	mcpSetup(t, e, up.addr, extProcFilter(time.Second))
	if resp, _ := do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`)); resp.StatusCode != 200 {
		t.Fatalf("got %d", resp.StatusCode)
	}
	e.ext.srv.Stop()
	if resp, _ := do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`)); resp.StatusCode != 500 {
		t.Fatalf("ext_proc down: got %d", resp.StatusCode)
	}
	restarted := restartExtProc(t, e.ext)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if resp, _ := do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`)); resp.StatusCode == 200 {
			if len(restarted.streams(t, 1)) == 0 {
				t.Fatal("no stream on the restarted server")
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the double never reached ext_proc again")
}
