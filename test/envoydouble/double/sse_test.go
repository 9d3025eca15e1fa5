package double_test

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sseUpstream writes one SSE event, flushes, and writes the next only when the test says so: a
// client that reads event n before event n+1 exists proves the double does not buffer.
type sseUpstream struct {
	*httptestServer
	next chan struct{}
}

func newSSEUpstream(t *testing.T, events []string) *sseUpstream {
	u := &sseUpstream{next: make(chan struct{})}
	u.httptestServer = newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "text/event-stream")
		w.Header().Set("content-length", "9999") // a proxy in STREAMED mode must drop it
		w.Header().Del("content-length")
		w.WriteHeader(200)
		for i, ev := range events {
			if i > 0 {
				select {
				case <-u.next:
				case <-r.Context().Done():
					return
				case <-time.After(30 * time.Second): // longer than readEvent's limit
					return
				}
			}
			fmt.Fprintf(w, "event: message\ndata: %s\n\n", ev)
			w.(http.Flusher).Flush()
		}
	})
	return u
}

// release lets the upstream write its next event.
func (u *sseUpstream) release(t *testing.T) {
	t.Helper()
	select {
	case u.next <- struct{}{}:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream is not waiting to write its next event")
	}
}

// readEvent reads one SSE event's data line, failing the test after 10 s.
func readEvent(t *testing.T, r *bufio.Reader) (string, error) {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		var data string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				ch <- res{data, err}
				return
			}
			line = strings.TrimRight(line, "\n")
			if strings.HasPrefix(line, "data: ") {
				data = strings.TrimPrefix(line, "data: ")
			}
			if line == "" && data != "" {
				ch <- res{data, nil}
				return
			}
		}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("no SSE event within 10 s: the stream is buffered")
		return "", nil
	}
}

// streamedSSE answers response headers of text/event-stream with mode_override STREAMED, as
// mcpgate's ext_proc does, replaces "secret" in chunks, and records chunk replies.
type streamedSSE struct {
	mu     sync.Mutex
	chunks []*extprocsvc.HttpBody
	failOn string
}

func (x *streamedSSE) script(s *extStream) error {
	for {
		m, err := s.recv()
		if err != nil {
			return nil
		}
		r := continueFor(m)
		switch {
		case m.GetResponseHeaders() != nil:
			ct, _ := header(m.GetResponseHeaders().GetHeaders(), "content-type")
			if ct == "text/event-stream" {
				r.ModeOverride = &extprocv3.ProcessingMode{ResponseBodyMode: extprocv3.ProcessingMode_STREAMED}
			}
		case m.GetResponseBody() != nil:
			b := m.GetResponseBody()
			x.mu.Lock()
			x.chunks = append(x.chunks, b)
			x.mu.Unlock()
			if x.failOn != "" && strings.Contains(string(b.GetBody()), x.failOn) {
				return status.Error(codes.Internal, "broken")
			}
			if strings.Contains(string(b.GetBody()), "secret") {
				r = withCommon(m, &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{
					Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(strings.ReplaceAll(string(b.GetBody()), "secret", "hidden"))}}})
			}
		}
		if err := s.srv.Send(r); err != nil {
			return nil
		}
	}
}

func TestSSEStreamedChunkByChunk(t *testing.T) {
	x := &streamedSSE{}
	e := newEnv(t, x.script)
	up := newSSEUpstream(t, []string{"one", "secret two", "three"})
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))

	resp, err := http.Get(e.url("/sse"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("content-length") != "" || resp.ContentLength != -1 {
		t.Errorf("content-length %q in STREAMED mode", resp.Header.Get("content-length"))
	}
	r := bufio.NewReader(resp.Body)
	for i, want := range []string{"one", "hidden two", "three"} {
		got, err := readEvent(t, r)
		if err != nil || got != want {
			t.Fatalf("event %d: %q %v, want %q", i, got, err, want)
		}
		if i < 2 {
			up.release(t) // the upstream writes the next event only now
		}
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Error("stream did not end")
	}
	st := e.ext.streams(t, 1)[0]
	st.ended(t)
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.chunks) < 3 {
		t.Fatalf("%d chunks, want one message per upstream write", len(x.chunks))
	}
	if last := x.chunks[len(x.chunks)-1]; !last.GetEndOfStream() {
		t.Error("last chunk without end_of_stream")
	}
	for _, c := range x.chunks[:len(x.chunks)-1] {
		if c.GetEndOfStream() {
			t.Error("end_of_stream before the last chunk")
		}
	}
	if l := e.logs(1)[0]; l["response_code"] != float64(200) || l["bytes_sent"].(float64) == 0 || l["content_type"] != "text/event-stream" {
		t.Errorf("access log %v", l)
	}
}

func TestSSEExtProcFailureMidStreamResetsDownstream(t *testing.T) {
	x := &streamedSSE{failOn: "two"}
	e := newEnv(t, x.script)
	up := newSSEUpstream(t, []string{"one", "two"})
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))
	resp, err := http.Get(e.url("/sse"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if got, err := readEvent(t, r); err != nil || got != "one" {
		t.Fatalf("first event %q %v", got, err)
	}
	up.release(t)
	// Headers (200) are already downstream: Envoy resets the stream rather than answer 500.
	got, err := readEvent(t, r)
	if err == nil {
		t.Fatalf("read %q after the ext_proc failure, want a reset", got)
	}
	if l := e.logs(1)[0]; l["response_code"] != float64(200) || !strings.Contains(l["details"].(string), "ext_proc_error_gRPC_error_13") {
		t.Errorf("access log %v", l)
	}
}

// Envoy's codec writes response headers as soon as they are encoded, before any body: a client
// of an SSE stream that only later carries events (a Streamable HTTP GET stream) must see the
// headers at once.
func TestResponseHeadersReachTheClientBeforeTheBody(t *testing.T) {
	x := &streamedSSE{}
	e := newEnv(t, x.script)
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select { // no body until the client has the headers
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "event: message\ndata: late\n\n")
	})
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))

	got := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get(e.url("/mcp"))
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		got <- resp
	}()
	var resp *http.Response
	select {
	case resp = <-got:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("no response headers while the upstream holds its body: the double waits for body bytes")
	}
	close(release)
	if resp == nil {
		t.FailNow()
	}
	defer resp.Body.Close()
	if ev, err := readEvent(t, bufio.NewReader(resp.Body)); err != nil || ev != "late" {
		t.Fatalf("event %q %v, want late", ev, err)
	}
}
