package telemetry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gateWriter records each Write; the first one waits until gate is closed.
type gateWriter struct {
	entered chan struct{} // closed when the first Write starts
	gate    chan struct{}
	mu      sync.Mutex
	writes  [][]byte
}

func newGateWriter() *gateWriter {
	return &gateWriter{entered: make(chan struct{}), gate: make(chan struct{})}
}

func (w *gateWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	first := len(w.writes) == 0
	w.writes = append(w.writes, bytes.Clone(p))
	w.mu.Unlock()
	if first {
		close(w.entered)
		<-w.gate
	}
	return len(p), nil
}

// TestAuditLinesShareAWrite: the lines finished while a write is in progress do not wait for it;
// the Finish making the write writes them, in one more Write, before it returns. Every line is
// written once, whole.
func TestAuditLinesShareAWrite(t *testing.T) {
	w := newGateWriter()
	tel, err := New(Options{Audit: w})
	if err != nil {
		t.Fatal(err)
	}
	finish := func(id int) {
		r := sampleRecord()
		r.ID = json.RawMessage(fmt.Sprint(id))
		tel.Finish(r, r.Time)
	}
	firstDone := make(chan struct{})
	go func() { finish(0); close(firstDone) }()
	<-w.entered
	// The first line's Write is blocked: these return at once, their lines left to that Finish.
	for i := 1; i <= 20; i++ {
		finish(i)
	}
	select {
	case <-firstDone:
		t.Fatal("the Finish whose Write is blocked returned")
	default:
	}
	close(w.gate)
	<-firstDone
	if len(w.writes) != 2 {
		t.Fatalf("%d writes, want 2 (the first line, then the 20 that came during it)", len(w.writes))
	}
	seen := map[string]int{}
	for _, line := range strings.SplitAfter(string(bytes.Join(w.writes, nil)), "\n") {
		if line == "" {
			continue
		}
		m := checkAuditLine(t, []byte(line))
		seen[fmt.Sprint(m["jsonrpc_id"])]++
	}
	for i := 0; i <= 20; i++ {
		if n := seen[fmt.Sprint(i)]; n != 1 {
			t.Errorf("line %d written %d times", i, n)
		}
	}
}

// panicWriter panics on its first Write, then records.
type panicWriter struct {
	calls int
	out   bytes.Buffer
}

func (w *panicWriter) Write(p []byte) (int, error) {
	w.calls++
	if w.calls == 1 {
		panic("disk on fire")
	}
	return w.out.Write(p)
}

// TestAuditWriterPanic: a writer that panics fails the Finish that wrote (as before batching),
// and the next line is written, not left waiting for that write.
func TestAuditWriterPanic(t *testing.T) {
	w := &panicWriter{}
	tel, err := New(Options{Audit: w})
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the writer's panic was lost")
			}
		}()
		r := sampleRecord()
		tel.Finish(r, r.Time)
	}()
	r := sampleRecord()
	r.ID = json.RawMessage(`"after"`)
	tel.Finish(r, r.Time)
	if m := checkAuditLine(t, w.out.Bytes()); m["jsonrpc_id"] != "after" {
		t.Errorf("after the panic, the audit log holds %q", w.out.String())
	}
}

// TestAuditBatchBounded: while a write is blocked, the lines waiting for it hold at most
// maxAuditBatch bytes (and one line): past that, Finish waits, as a stalled destination must hold
// the streams back rather than fill memory.
func TestAuditBatchBounded(t *testing.T) {
	w := newGateWriter()
	a := newAuditLog(w, slog.New(slog.DiscardHandler))
	line := []byte(strings.Repeat("x", 4095) + "\n")
	const lines = 3 * maxAuditBatch / 4096
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.add(line) }()
	<-w.entered
	for range lines {
		wg.Add(1)
		go func() { defer wg.Done(); a.add(line) }()
	}
	close(w.gate)
	wg.Wait()
	total := 0
	for i, b := range w.writes {
		if len(b) > maxAuditBatch+len(line) {
			t.Errorf("write %d carried %d bytes, over the bound %d", i, len(b), maxAuditBatch+len(line))
		}
		total += len(b)
	}
	if want := (lines + 1) * len(line); total != want {
		t.Errorf("%d bytes written, want %d", total, want)
	}
}

// TestAuditClaimNames: the audit line writes the token's claims that ClaimNames names (those the
// rules read), and no claims field when the token has none of them.
func TestAuditClaimNames(t *testing.T) {
	var out bytes.Buffer
	tel, err := New(Options{Audit: &out})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"org": "solo.io", "email": "a@b.c", "groups": []any{"x"}, "sub": "u"}
	r := sampleRecord()
	r.Claims, r.ClaimNames = claims, []string{"groups", "org", "team"}
	tel.Finish(r, r.Time)
	r = sampleRecord()
	r.Claims, r.ClaimNames = claims, []string{"team"}
	tel.Finish(r, r.Time)
	lines := bytes.SplitAfter(out.Bytes(), []byte("\n"))
	if got := checkAuditLine(t, lines[0])["claims"]; fmt.Sprint(got) != "map[groups:[x] org:solo.io]" {
		t.Errorf("claims = %v, want groups and org only", got)
	}
	if !bytes.Contains(lines[0], []byte(`"claims":{"groups":["x"],"org":"solo.io"}`)) {
		t.Errorf("claims not in name order: %s", lines[0])
	}
	if m := checkAuditLine(t, lines[1]); m["claims"] != nil {
		t.Errorf("a token without the named claims wrote claims %v", m["claims"])
	}
}

// TestNoLatencyOfUnansweredOutcomes: a refused request and a notification count, and make no
// latency series (the series cache must not make one for them).
func TestNoLatencyOfUnansweredOutcomes(t *testing.T) {
	reg := prometheus.NewRegistry()
	tel, err := New(Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		for _, o := range []string{OutcomeRefused, OutcomeNotification, OutcomeResult} {
			r := sampleRecord()
			r.Outcome = o
			tel.Finish(r, r.Time)
		}
	}
	for _, o := range []string{OutcomeRefused, OutcomeNotification, OutcomeResult} {
		if n := metric(t, reg, "mcpgate_mcp_requests_total", map[string]string{"outcome": o}); n != 2 {
			t.Errorf("outcome %s counted %v times, want 2", o, n)
		}
	}
	if n := metric(t, reg, "mcpgate_mcp_request_duration_seconds", nil); n != 2 {
		t.Errorf("%v latencies observed, want 2 (the results')", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "mcpgate_mcp_request_duration_seconds" && len(mf.GetMetric()) != 1 {
			t.Errorf("%d latency series, want 1", len(mf.GetMetric()))
		}
	}
}

// TestLabelGuardConcurrent: values read while others are admitted (run with -race).
func TestLabelGuardConcurrent(t *testing.T) {
	g := newLabelGuard(50)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				v := fmt.Sprintf("t%d", (i*7+w)%80)
				g.admit(v)
				if got := g.value(v); got != v && got != "other" {
					t.Errorf("value(%s) = %s", v, got)
				}
			}
		}()
	}
	wg.Wait()
	if n := len(*g.seen.Load()); n != 50 {
		t.Errorf("%d values admitted, want the bound 50", n)
	}
	// Each admitted value reads as itself, every other one as "other": no admission was lost
	// or half made while others read.
	admitted := 0
	for i := range 80 {
		v := fmt.Sprintf("t%d", i)
		switch got := g.value(v); got {
		case v:
			admitted++
		case "other":
		default:
			t.Errorf("value(%s) = %s", v, got)
		}
	}
	if admitted != 50 {
		t.Errorf("%d values read as themselves, want the 50 admitted", admitted)
	}
}

// TestMayNameRedactedKey: the allocation-free lowering gives what bytes.ToLower gives, for ASCII
// of any case, non-ASCII (where case folding differs: K is the Kelvin sign) and long arguments.
func TestMayNameRedactedKey(t *testing.T) {
	tel, err := New(Options{RedactKeys: []string{"token", "password", "authz"}})
	if err != nil {
		t.Fatal(err)
	}
	long := `{"a":"` + strings.Repeat("z", 600)
	for raw, want := range map[string]bool{
		`{"url":"x"}`:                 false,
		`{"TOKEN":"x"}`:               true,
		`{"PassWord":1}`:              true,
		`{"AUTHZ":1}`:                 true, // the ends of A-Z
		`{"to\u004ben":1}`:            true, // an escape could spell one
		"{\"to\u212aen\":1}":          true, // Kelvin sign lowers to k
		"{\"été\":1}":                 false,
		long + `"}`:                   false,
		long + `","Token":"x"}`:       true,
		long + "\",\"to\u212aen\":1}": true,
	} {
		if got := tel.mayNameRedactedKey([]byte(raw)); got != want {
			t.Errorf("mayNameRedactedKey(%.40q...) = %v, want %v", raw, got, want)
		}
	}
}

// lateReader is a writer that reads each Write's bytes only after gate is closed, as a slow pipe
// or a socket does while its write is in progress.
type lateReader struct {
	entered chan struct{} // closed when the first Write starts
	gate    chan struct{}
	out     bytes.Buffer
}

func (w *lateReader) Write(p []byte) (int, error) {
	if w.out.Len() == 0 {
		close(w.entered)
		<-w.gate
	}
	return w.out.Write(p)
}

// TestAuditBatchNotOverwrittenWhileWritten: the lines that come while a write is in progress go
// into a buffer of their own: the bytes being written are not overwritten before the writer has
// read them, so no audit line is lost, mixed with another or written twice.
func TestAuditBatchNotOverwrittenWhileWritten(t *testing.T) {
	w := &lateReader{entered: make(chan struct{}), gate: make(chan struct{})}
	a := newAuditLog(w, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { defer close(done); a.add([]byte("first line\n")) }()
	<-w.entered
	for i := range 3 {
		a.add(fmt.Appendf(nil, "line %d\n", i))
	}
	close(w.gate)
	<-done
	if want := "first line\nline 0\nline 1\nline 2\n"; w.out.String() != want {
		t.Errorf("audit log holds %q, want %q", w.out.String(), want)
	}
}

// TestAuditSpareBounded: the buffer of a written batch is kept for the next batch up to
// maxAuditSpare bytes; a larger one (a burst of lines) is dropped, not held for good.
func TestAuditSpareBounded(t *testing.T) {
	var out bytes.Buffer
	a := newAuditLog(&out, slog.New(slog.DiscardHandler))
	a.add([]byte("small\n"))
	if cap(a.spare) == 0 || len(a.spare) != 0 {
		t.Errorf("small batch: spare len %d cap %d, want kept and empty", len(a.spare), cap(a.spare))
	}
	a.add([]byte(strings.Repeat("x", maxAuditSpare) + "\n"))
	if cap(a.spare) > maxAuditSpare {
		t.Errorf("a batch of %d bytes kept as spare (cap %d), over maxAuditSpare %d", maxAuditSpare+1, cap(a.spare), maxAuditSpare)
	}
	if out.Len() != len("small\n")+maxAuditSpare+1 {
		t.Errorf("%d bytes written", out.Len())
	}
}

// stepWriter blocks its Write number i (from 0) until gate[i] is closed, having closed entered[i].
type stepWriter struct {
	entered, gate [2]chan struct{}
	mu            sync.Mutex
	n             int
	out           bytes.Buffer
}

func (w *stepWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	i := w.n
	w.n++
	w.out.Write(p)
	w.mu.Unlock()
	if i < len(w.gate) {
		close(w.entered[i])
		<-w.gate[i]
	}
	return len(p), nil
}

// waitingInAdd counts the goroutines waiting in auditLog.add for room in the batch.
func waitingInAdd() int {
	buf := make([]byte, 1<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "(*auditLog).add") && strings.Contains(g, "(*Cond).Wait") {
			n++
		}
	}
	return n
}

// TestAuditWaitEndsWithTheWrite: a line that found the batch full waits for the write in
// progress only: as soon as that write ends and its caller takes the batch, the line joins the
// next batch and its add returns, while the next write is still in progress.
func TestAuditWaitEndsWithTheWrite(t *testing.T) {
	w := &stepWriter{}
	for i := range w.gate {
		w.entered[i], w.gate[i] = make(chan struct{}), make(chan struct{})
	}
	a := newAuditLog(w, slog.New(slog.DiscardHandler))
	line := []byte(strings.Repeat("x", 4095) + "\n")
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); a.add(line) }()
	<-w.entered[0]
	for range maxAuditBatch / len(line) { // the batch full: these return at once
		a.add(line)
	}
	waiterDone := make(chan struct{})
	go func() { defer close(waiterDone); a.add(line) }()
	for deadline := time.Now().Add(10 * time.Second); waitingInAdd() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the line after a full batch does not wait")
		}
	}
	close(w.gate[0])
	<-w.entered[1] // the full batch is being written
	select {
	case <-waiterDone:
	case <-time.After(10 * time.Second):
		t.Error("the waiting line still waits while the write after the one it waited for is in progress")
	}
	close(w.gate[1])
	<-writerDone
	<-waiterDone
	if want := (maxAuditBatch/len(line) + 2) * len(line); w.out.Len() != want {
		t.Errorf("%d bytes written, want %d", w.out.Len(), want)
	}
}

// TestSeriesPerLabelSet: records differing in one label each count in a series of their own, and
// their latencies in the series of their gateway, route, target and method (the series cache is
// keyed by every label).
func TestSeriesPerLabelSet(t *testing.T) {
	reg := prometheus.NewRegistry()
	tel, err := New(Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	base := sampleRecord()
	variants := []func(r *Record){
		func(*Record) {},
		func(r *Record) { r.Gateway = "ns/other-gw" },
		func(r *Record) { r.Route = "ns/other/rule/0" },
		func(r *Record) { r.Target = "other-target" },
		func(r *Record) { r.Method = "tools/list" },
		func(r *Record) { r.Tool = "search" }, // a tools/call's result admits its tool as a value
		func(r *Record) { r.Decision = DecisionDeny },
		func(r *Record) { r.Outcome = OutcomeError },
	}
	for _, v := range variants {
		r := sampleRecord()
		v(r)
		tel.Finish(r, r.Time)
	}
	for i, v := range variants {
		r := sampleRecord()
		v(r)
		labels := map[string]string{"gateway": r.Gateway, "route": r.Route, "target": r.Target, "method": r.Method,
			"tool": r.Tool, "decision": r.Decision, "outcome": r.Outcome}
		if n := metric(t, reg, "mcpgate_mcp_requests_total", labels); n != 1 {
			t.Errorf("variant %d %v counted %v times, want 1", i, labels, n)
		}
	}
	// base, tool, deny and error share gateway, route, target and method: one latency series of 4.
	if n := metric(t, reg, "mcpgate_mcp_request_duration_seconds", map[string]string{"gateway": base.Gateway,
		"route": base.Route, "target": base.Target, "method": base.Method}); n != 4 {
		t.Errorf("%v latencies in the base series, want 4", n)
	}
}
