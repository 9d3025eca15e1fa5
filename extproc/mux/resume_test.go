package mux_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/extproc/mux"
)

// resumeVersion is the protocol version of the resume tests' requests: the go-sdk sends a priming
// event (an id, no data) first in a call's stream from it on.
const resumeVersion = "2025-11-25"

// resumable is a go-sdk target with an event store (its streams can be resumed), served for the
// mux by handler, which reports on ended each request of it whose handler returned: its HTTP
// method, and for a POST the JSON-RPC method ("POST tools/call").
// Its tool "poll" sends progress "poll 1" to "poll N" (N its argument before, 1 when not given),
// closes its stream (SSE polling), sends "poll N+1" and answers "polled". Its tool "step" sends
// progress "step 1", waits for release, then sends "step 2" and "step 3" and answers "stepped".
type resumable struct {
	server  *mcp.Server
	handler http.Handler
	ended   chan string
	release chan struct{}
}

func newResumable(name string) *resumable {
	r := &resumable{ended: make(chan string, 64), release: make(chan struct{})}
	r.server = mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, nil)
	mcp.AddTool(r.server, &mcp.Tool{Name: "step", Description: "progress, a pause, more progress, the answer"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			for i := 1; i <= 3; i++ {
				if i == 2 {
					select {
					case <-r.release:
					case <-ctx.Done():
						return nil, nil, ctx.Err()
					}
				}
				if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
					ProgressToken: req.Params.GetProgressToken(), Progress: float64(i), Message: "step " + strconv.Itoa(i)}); err != nil {
					return nil, nil, err
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "stepped"}}}, nil, nil
		})
	mcp.AddTool(r.server, &mcp.Tool{Name: "poll", Description: "progress, its stream closed (SSE polling), more progress, the answer"},
		func(ctx context.Context, req *mcp.CallToolRequest, args struct {
			Before int `json:"before,omitempty"`
		}) (*mcp.CallToolResult, any, error) {
			before := max(args.Before, 1)
			for i := 1; i <= before+1; i++ {
				if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
					ProgressToken: req.Params.GetProgressToken(), Progress: float64(i), Message: "poll " + strconv.Itoa(i)}); err != nil {
					return nil, nil, err
				}
				if i == before {
					req.Extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: time.Millisecond})
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "polled"}}}, nil, nil
		})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return r.server },
		&mcp.StreamableHTTPOptions{EventStore: mcp.NewMemoryEventStore(nil)})
	r.handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		what := req.Method
		if req.Method == http.MethodPost {
			body, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
			var m struct{ Method string }
			_ = json.Unmarshal(body, &m)
			what += " " + m.Method
		}
		h.ServeHTTP(w, req)
		select {
		case r.ended <- what:
		default:
		}
	})
	return r
}

// waitEnded waits until a request what (as ended names it) of r has ended.
func (r *resumable) waitEnded(t *testing.T, what string) {
	t.Helper()
	for receive(t, r.ended, "the end of a "+what+" at the target") != what {
	}
}

// notify sends a progress notification with message msg outside any request: it goes on the
// session's GET stream.
func (r *resumable) notify(t *testing.T, msg string) {
	t.Helper()
	for ss := range r.server.Sessions() {
		if err := ss.NotifyProgress(context.Background(), &mcp.ProgressNotificationParams{ProgressToken: "get", Message: msg}); err != nil {
			t.Fatalf("notification %s: %v", msg, err)
		}
	}
}

// sseEvent is an event of a stream the mux answered.
type sseEvent struct {
	typ, id, data, retry string
}

// events reads the events of an event stream, in order, until it ends (the channel closes).
func events(body io.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(body)
		var ev sseEvent
		for sc.Scan() {
			switch line := sc.Text(); {
			case line == "":
				if ev != (sseEvent{}) {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.typ = line[len("event: "):]
			case strings.HasPrefix(line, "retry: "):
				ev.retry = line[len("retry: "):]
			case strings.HasPrefix(line, "id: "):
				ev.id = line[len("id: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[len("data: "):]
			}
		}
	}()
	return ch
}

// message returns what an event says: the progress message or the tool's answer text, "" for an
// event without data.
func (ev sseEvent) message(t *testing.T) string {
	t.Helper()
	if ev.data == "" {
		return ""
	}
	var m struct {
		Params struct {
			Message string `json:"message"`
		} `json:"params"`
		Result *mcp.CallToolResult `json:"result"`
	}
	if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
		t.Fatalf("event data %s: %v", ev.data, err)
	}
	if m.Result != nil {
		return "answer " + text(t, m.Result)
	}
	return m.Params.Message
}

// openResumeSession opens a session at the mux (protocol resumeVersion) and returns its id.
func openResumeSession(t *testing.T, url string) string {
	t.Helper()
	hdr := map[string]string{"Mcp-Protocol-Version": resumeVersion}
	resp, body := postWith(t, url, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+resumeVersion+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, hdr)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	if resp, body := postWith(t, url, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %d %s", resp.StatusCode, body)
	}
	return sid
}

// stream sends a request (GET when body is "") of the session with Last-Event-ID last (none when
// "") and returns its answer; cancel ends it.
func stream(t *testing.T, url, sid, body, last string) (resp *http.Response, cancel context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	method, rd := http.MethodGet, io.Reader(nil)
	if body != "" {
		method, rd = http.MethodPost, strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Mcp-Protocol-Version", resumeVersion)
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, cancel
}

// TestResumeCall: a routed call's stream, which starts with the target's priming event (an id, no
// data), cut after its first progress event is resumed by a GET with the event id the mux gave
// that event: the rest of the progress and the answer come, each once, in the mux's ids again.
func TestResumeCall(t *testing.T) {
	a, b := newResumable("a"), newResumable("b")
	url := newRawGateway(t, mux.Options{Logger: testLogger()}, "FailClosed", []string{"a", "b"}, a.handler, b.handler)
	sid := openResumeSession(t, url)

	resp, cancel := stream(t, url, sid, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a_step","arguments":{},"_meta":{"progressToken":"p"}}}`, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("tools/call: %d", resp.StatusCode)
	}
	var last string
	first := true
	for ev := range events(resp.Body) {
		if first && (ev.id == "" || ev.data != "") {
			t.Errorf("the call's first event: %+v, want the target's priming event (an id, no data)", ev)
		}
		first = false
		if ev.id != "" {
			last = ev.id
		}
		if ev.message(t) == "step 1" {
			break
		}
	}
	if !strings.HasPrefix(last, mux.EventIDPrefix) {
		t.Fatalf("the call's stream up to step 1 gave the event id %q, want one of the mux's (%s...)", last, mux.EventIDPrefix)
	}
	cancel()
	a.waitEnded(t, "POST tools/call") // the target's stream of the call is cut, its tool still runs
	close(a.release)

	resp, cancel = stream(t, url, sid, "", last)
	defer cancel()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET with Last-Event-ID %s: %d %s", last, resp.StatusCode, body)
	}
	var got []string
	for ev := range events(resp.Body) {
		if msg := ev.message(t); msg != "" {
			got = append(got, msg)
			if !strings.HasPrefix(ev.id, mux.EventIDPrefix) {
				t.Errorf("resumed event %q has the id %q, want one of the mux's", msg, ev.id)
			}
		}
	}
	if want := []string{"step 2", "step 3", "answer stepped"}; !slices.Equal(got, want) {
		t.Errorf("resumed call's stream: %q, want %q", got, want)
	}
}

// TestResumeGet: the merged GET stream resumed from an event id the mux gave gets every target's
// events after that event, and only those; the ids of a resumed stream keep every target's
// position, also of a target that sent nothing since.
func TestResumeGet(t *testing.T) {
	a, b := newResumable("a"), newResumable("b")
	url := newRawGateway(t, mux.Options{Logger: testLogger()}, "FailOpen", []string{"a", "b"}, a.handler, b.handler)
	sid := openResumeSession(t, url)

	// next returns the message and id of the next event of evs with a message.
	next := func(evs <-chan sseEvent) (string, string) {
		t.Helper()
		for ev := range evs {
			if msg := ev.message(t); msg != "" {
				return msg, ev.id
			}
		}
		t.Fatal("the GET stream ended")
		return "", ""
	}
	// open opens the GET stream from last; closed ends it and waits until both targets' ends.
	open := func(last string) (evs <-chan sseEvent, closed func()) {
		t.Helper()
		resp, cancel := stream(t, url, sid, "", last)
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("GET from %q: %d %s", last, resp.StatusCode, body)
		}
		return events(resp.Body), func() {
			cancel()
			a.waitEnded(t, http.MethodGet)
			b.waitEnded(t, http.MethodGet)
		}
	}

	evs, closed := open("")
	var afterB1 string
	for _, s := range []struct {
		r   *resumable
		msg string
	}{{a, "a1"}, {b, "b1"}, {a, "a2"}, {b, "b2"}} {
		s.r.notify(t, s.msg)
		msg, id := next(evs)
		if msg != s.msg {
			t.Fatalf("GET stream: %q, want %q", msg, s.msg)
		}
		if !strings.HasPrefix(id, mux.EventIDPrefix) {
			t.Fatalf("GET stream's event %q has the id %q, want one of the mux's", msg, id)
		}
		if msg == "b1" {
			afterB1 = id
		}
	}
	closed()
	a.notify(t, "a3")
	b.notify(t, "b3")

	// From b1: a2, b2, a3, b3 (each target's in order), not a1 or b1.
	evs, closed = open(afterB1)
	var got []string
	var last string
	for len(got) < 4 {
		msg, id := next(evs)
		got, last = append(got, msg), id
	}
	slices.Sort(got)
	if want := []string{"a2", "a3", "b2", "b3"}; !slices.Equal(got, want) {
		t.Fatalf("GET stream resumed after b1: %q, want %q", got, want)
	}
	closed()

	// From there only a sends; the id of its event still says where b is.
	a.notify(t, "a4")
	evs, closed = open(last)
	msg, afterA4 := next(evs)
	if msg != "a4" {
		t.Fatalf("GET stream resumed after a3 and b3: %q first, want a4", msg)
	}
	closed()
	b.notify(t, "b5")
	evs, closed = open(afterA4)
	defer closed()
	if msg, _ := next(evs); msg != "b5" {
		t.Fatalf("GET stream resumed after a4: %q first, want b5 (b's position kept in a4's id)", msg)
	}
}

// TestResumeRefused: a Last-Event-ID the mux did not give, one naming a target that is not in the
// session, and one a target cannot resume from are answered 400 saying so (under FailOpen too: the
// client would lose events unawares), before any stream is opened.
func TestResumeRefused(t *testing.T) {
	a, b := newResumable("a"), newResumable("b")
	url := newRawGateway(t, mux.Options{Logger: testLogger()}, "FailOpen", []string{"a", "b"}, a.handler, b.handler)
	sid := openResumeSession(t, url)
	id := func(s string) string { return mux.EventIDPrefix + base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct{ last, want string }{
		{"_3", `Last-Event-ID "_3": not an event id of mcpgate's mux (m1....); open the stream without it`},
		{"m1.!!", `Last-Event-ID "m1.!!": not an event id of mcpgate's mux (m1....): its base64url does not decode`},
		{id("g\nz:_1"), `names target "z", which has no stream in this session`},
		{id("c\na:_1\nb:_2"), `a call's stream names one target, not 2`},
		{id("g\na:_1\nb:bogus"), `target b cannot resume its stream from its event id "bogus": HTTP 400 Bad Request: malformed Last-Event-ID "bogus"`},
	} {
		resp, cancel := stream(t, url, sid, "", c.last)
		body, _ := io.ReadAll(resp.Body)
		cancel()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), c.want) {
			t.Errorf("GET with Last-Event-ID %q: %d %s, want 400 saying %s", c.last, resp.StatusCode, body, c.want)
		}
	}
}

// TestResumeClosedCallStream: a target that closes a call's stream before its answer (SSE polling,
// MCP 2025-11-25) has the go-sdk client resume it through the mux, as it would at the target,
// and the call is answered; the mux does not end the stream with an error of its own.
func TestResumeClosedCallStream(t *testing.T) {
	a, b := newResumable("a"), newResumable("b")
	url := newRawGateway(t, mux.Options{Logger: testLogger()}, "FailClosed", []string{"a", "b"}, a.handler, b.handler)
	progress := make(chan string, 8)
	client := mcp.NewClient(&mcp.Implementation{Name: "mux-test", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			progress <- req.Params.Message
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	params := &mcp.CallToolParams{Name: "a_poll", Arguments: map[string]any{}}
	params.SetProgressToken("p")
	res, err := cs.CallTool(ctx, params)
	if err != nil {
		t.Fatalf("tools/call a_poll, its stream closed before the answer: %v", err)
	}
	if got := text(t, res); got != "polled" {
		t.Errorf("tools/call a_poll: %q, want polled", got)
	}
	got := []string{receive(t, progress, "progress"), receive(t, progress, "progress")}
	slices.Sort(got)
	if want := []string{"poll 1", "poll 2"}; !slices.Equal(got, want) {
		t.Errorf("progress %q, want %q", got, want)
	}
}

// TestResumeRetry: the retry field a target sends before it closes a call's stream (the go-sdk's
// "close" event, no data) reaches a Streamable HTTP client as the target sent it, its type kept,
// so that the client waits what the target asked; for an HTTP+SSE client the mux waits that
// itself, not its own Options.ResumeDelay (an hour here). (The go-sdk sends the retry field to
// clients of MCP 2025-11-25 and later only; the HTTP+SSE client's session is 2024-11-05, so the
// target's streams get one from retryWriter.)
func TestResumeRetry(t *testing.T) {
	a, b := newResumable("a"), newResumable("b")
	url := newRawGateway(t, mux.Options{Logger: testLogger(), ResumeDelay: time.Hour}, "FailClosed", []string{"a", "b"}, a.handler, b.handler)
	sid := openResumeSession(t, url)
	resp, cancel := stream(t, url, sid, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a_poll","arguments":{},"_meta":{"progressToken":"p"}}}`, "")
	defer cancel()
	var closing []sseEvent
	for ev := range events(resp.Body) {
		if ev.retry != "" || ev.typ == "close" {
			closing = append(closing, ev)
		}
	}
	if len(closing) != 1 || closing[0].typ != "close" || closing[0].retry != "1" || closing[0].data != "" {
		t.Errorf("the call's stream, closed by the target: events with a retry field or of type close %+v, want one: close, retry 1 (ms), no data", closing)
	}

	a, b = newResumable("a"), newResumable("b")
	target := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w = &retryWriter{ResponseWriter: w}
		}
		a.handler.ServeHTTP(w, r)
	})
	url = newRawGateway(t, mux.Options{Logger: testLogger(), ResumeDelay: time.Hour}, "FailClosed", []string{"a", "b"}, target, b.handler)
	cs := connectSSE(t, url, nil)
	ctx, cancelCall := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelCall()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "a_poll", Arguments: map[string]any{}})
	if err != nil {
		t.Fatalf("HTTP+SSE client: tools/call a_poll, the target asking a retry of 1 ms: %v, want the answer (the mux waiting the target's retry)", err)
	}
	if got := text(t, res); got != "polled" {
		t.Errorf("HTTP+SSE client: tools/call a_poll: %q, want polled", got)
	}
}

// retryWriter adds the retry field of 1 ms to the first event of an event stream answer.
type retryWriter struct {
	http.ResponseWriter
	added bool
}

func (w *retryWriter) Write(b []byte) (int, error) {
	if !w.added && strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream") {
		w.added = true
		if _, err := io.WriteString(w.ResponseWriter, "retry: 1\n"); err != nil {
			return 0, err
		}
	}
	return w.ResponseWriter.Write(b)
}

func (w *retryWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestResumeClosedCallStreamLegacyClient: an HTTP+SSE client cannot resume a stream, so the mux
// resumes a call's stream the target closed before its answer (SSE polling) itself: the client
// gets the tool's result and every progress notification of the call once, twice in a row.
func TestResumeClosedCallStreamLegacyClient(t *testing.T) {
	a, b := newResumable("a"), newResumable("b")
	url := newRawGateway(t, mux.Options{Logger: testLogger(), ResumeDelay: time.Millisecond}, "FailClosed", []string{"a", "b"}, a.handler, b.handler)
	progress := make(chan string, 16)
	cs := connectSSE(t, url, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			progress <- req.Params.ProgressToken.(string) + " " + req.Params.Message
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, token := range []string{"p1", "p2"} {
		params := &mcp.CallToolParams{Name: "a_poll", Arguments: map[string]any{"before": 2}}
		params.SetProgressToken(token)
		res, err := cs.CallTool(ctx, params)
		if err != nil {
			t.Fatalf("HTTP+SSE client: tools/call a_poll (%s), its stream closed before the answer: %v", token, err)
		}
		if got := text(t, res); got != "polled" {
			t.Errorf("HTTP+SSE client: tools/call a_poll (%s): %q, want polled", token, got)
		}
	}
	// The client handles notifications in order: everything before the second call's first
	// progress is the first call's.
	var got []string
	for msg := ""; msg != "p2 poll 1"; {
		msg = receive(t, progress, "progress")
		got = append(got, msg)
	}
	if want := []string{"p1 poll 1", "p1 poll 2", "p1 poll 3", "p2 poll 1"}; !slices.Equal(got, want) {
		t.Errorf("HTTP+SSE client's progress: %q, want %q", got, want)
	}
}

// TestResumeClosedCallStreamLegacyClientTarget: the mux's resumption of a call's stream for an
// HTTP+SSE client as the target answers it: a target that answers its GET 5xx is asked again (the
// call answered then), so is one whose resumed streams each give a new event id; one that refuses
// the Last-Event-ID (400), or whose resumed streams end without a new event 5 times in a row,
// fails the call with the mux's -32603 saying so, naming the target.
func TestResumeClosedCallStreamLegacyClientTarget(t *testing.T) {
	for _, tc := range []struct {
		name string
		// resume answers the target's n-th GET with Last-Event-ID (from 1), first the
		// Last-Event-ID of the first; false passes it on.
		resume func(w http.ResponseWriter, r *http.Request, n int, first string) bool
		// want is what the call's error says ("": the call is answered); gets how many GETs
		// with Last-Event-ID the target gets.
		want string
		gets int
	}{
		{"503 once", func(w http.ResponseWriter, _ *http.Request, n int, _ string) bool {
			if n == 1 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
			}
			return n == 1
		}, "", 2},
		{"400", func(w http.ResponseWriter, _ *http.Request, _ int, _ string) bool {
			http.Error(w, "no resumption here", http.StatusBadRequest)
			return true
		}, `mcpgate mux: target a cannot resume its stream from its event id "`, 1},
		{"empty streams", func(w http.ResponseWriter, _ *http.Request, _ int, _ string) bool {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			return true
		}, "mcpgate mux: target a: resumed from its event id ", 5},
		{"a new id each time", func(w http.ResponseWriter, r *http.Request, n int, first string) bool {
			// Streams of one priming event each, more than 5, then the real one: each
			// brought a new id, so the mux goes on.
			if n <= 7 {
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprintf(w, "id: primed-%d\ndata:\n\n", n)
				return true
			}
			r.Header.Set("Last-Event-ID", first)
			return false
		}, "", 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newResumable("a"), newResumable("b")
			var mu sync.Mutex
			n, first := 0, ""
			target := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if last := r.Header.Get("Last-Event-ID"); r.Method == http.MethodGet && last != "" {
					mu.Lock()
					if n++; n == 1 {
						first = last
					}
					i, f := n, first
					mu.Unlock()
					if tc.resume(w, r, i, f) {
						return
					}
				}
				a.handler.ServeHTTP(w, r)
			})
			url := newRawGateway(t, mux.Options{Logger: testLogger(), ResumeDelay: time.Millisecond}, "FailClosed", []string{"a", "b"}, target, b.handler)
			cs := connectSSE(t, url, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "a_poll", Arguments: map[string]any{}})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("HTTP+SSE client: tools/call a_poll: %v, want its answer", err)
			case tc.want == "":
				if got := text(t, res); got != "polled" {
					t.Errorf("HTTP+SSE client: tools/call a_poll: %q, want polled", got)
				}
			case err == nil || !strings.Contains(err.Error(), tc.want):
				t.Errorf("HTTP+SSE client: tools/call a_poll, its resumption failing: %v, want the mux's error saying %s", err, tc.want)
			}
			mu.Lock()
			defer mu.Unlock()
			if n != tc.gets {
				t.Errorf("the mux resumed the call's stream %d times, want %d", n, tc.gets)
			}
		})
	}
}

// TestResumeClosedCallStreamLegacyClientGone: the HTTP+SSE client going away while the mux
// resumes its call's stream ends the resumed stream at the target.
func TestResumeClosedCallStreamLegacyClientGone(t *testing.T) {
	a, b := newResumable("a"), newResumable("b")
	resumed, ended := make(chan struct{}, 1), make(chan struct{}, 1)
	target := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.Header.Get("Last-Event-ID") == "" {
			a.handler.ServeHTTP(w, r)
			return
		}
		// A resumed stream that gives nothing until the mux ends it.
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		resumed <- struct{}{}
		<-r.Context().Done()
		ended <- struct{}{}
	})
	url := newRawGateway(t, mux.Options{Logger: testLogger(), ResumeDelay: time.Millisecond}, "FailClosed", []string{"a", "b"}, target, b.handler)
	cs := connectSSE(t, url, nil)
	ctx, cancel := context.WithCancel(context.Background())
	called := make(chan struct{})
	go func() {
		defer close(called)
		_, _ = cs.CallTool(ctx, &mcp.CallToolParams{Name: "a_poll", Arguments: map[string]any{}})
	}()
	receive(t, resumed, "the mux's resumption of the call's stream")
	// The call given up first: the go-sdk client's Close waits for the calls in flight.
	cancel()
	<-called
	cs.Close()
	receive(t, ended, "the end of the resumed stream at the target, the client gone")
}
