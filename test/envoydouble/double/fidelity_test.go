package double_test

// Tests of Envoy behaviours found missing by an audit of the double's ext_proc filter against
// Envoy's source (ext_proc.cc, processor_state.cc, mutation_utils.cc, mutation_rules.cc,
// filter_manager.cc); each names the Envoy source it follows.

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
)

// TestResponseBodyArrivingBeforeTheHeadersReply: the upstream's body does not wait for ext_proc's
// reply to the response headers. ext_proc.cc onData holds it meanwhile: with the body mode in force
// BUFFERED it returns StopIterationAndBuffer, and the filter manager answers 500 as soon as it
// holds more than the buffer limit (ActiveStreamEncoderFilter::responseDataTooLarge), whatever
// the reply would have said (a mode_override to BUFFERED_PARTIAL or NONE comes too late). In other
// modes it returns StopIterationAndWatermark: the body waits, whole.
func TestResponseBodyArrivingBeforeTheHeadersReply(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 4096)
	wrote := make(chan struct{}, 4)
	e := newEnv(t, func(s *extStream) error {
		for {
			m, err := s.recv()
			if err != nil {
				return nil
			}
			r := continueFor(m)
			if m.GetResponseHeaders() != nil {
				// Reply once the upstream wrote its whole body (or not at all, if the stream ends
				// first): the double has read what Envoy would have.
				select {
				case <-wrote:
				case <-s.srv.Context().Done():
					return nil
				}
				time.Sleep(50 * time.Millisecond)
				r.ModeOverride = &extprocv3.ProcessingMode{RequestBodyMode: extprocv3.ProcessingMode_BUFFERED,
					ResponseHeaderMode: extprocv3.ProcessingMode_SEND, ResponseBodyMode: extprocv3.ProcessingMode_NONE}
			}
			if err := s.srv.Send(r); err != nil {
				return nil
			}
		}
	})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		w.Write(big)
		w.(http.Flusher).Flush()
		wrote <- struct{}{}
	})
	l := listener(t, e.listen, extProcFilter(5*time.Second), nil)
	l.PerConnectionBufferLimitBytes.Value = 1024
	streamed := mcpMode()
	streamed.ResponseBodyMode = extprocv3.ProcessingMode_STREAMED
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"},
		prefixRoute("mcp", "/mcp", "up", perRoute(t, mcpMode())),
		prefixRoute("streamed", "/streamed", "up", perRoute(t, streamed)))),
		staticCluster("up", up.addr))

	resp, body := do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`))
	if resp.StatusCode != 500 || body != "Internal Server Error" {
		t.Errorf("BUFFERED: got %d %q, want Envoy's 500 once more than the buffer limit arrived before the headers reply", resp.StatusCode, body)
	}
	logs := e.logs(1)
	if d := logs[0]["details"]; d != "response_payload_too_large" {
		t.Errorf("details %v", d)
	}
	st := e.ext.streams(t, 1)[0]
	st.ended(t) // with the HTTP stream, its reply to the headers never applied
	if got := strings.Join(kinds(st.messages()), ","); got != "request_headers,request_body,response_headers" {
		t.Errorf("messages %s", got)
	}

	resp, body = do(t, "POST", e.url("/streamed"), strings.NewReader(`{}`))
	if resp.StatusCode != 200 || body != string(big) {
		t.Errorf("STREAMED: got %d, %d bytes; the body waits (watermark) for the headers reply", resp.StatusCode, len(body))
	}
}
