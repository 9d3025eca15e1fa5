package mcp

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

const sampleStream = "\xEF\xBB\xBF: ok\n\n" +
	"event: endpoint\r\ndata: /message?sessionId=é-1\r\n\r\n" +
	"id: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\n" +
	"data: \"result\":{\"tools\":[]}}\n\n" +
	"data:REPLACE me\r\rdata: x\ndata\n\n" +
	"retry: 10\nid: \x00bad\ndata: {\"id\":2}\n\n" +
	"data: unterminated"

type seen struct {
	typ, id, data string
	hasID         bool
	retry         string
}

func collect(evs *[]seen, repl func(*Event) []byte) Visit {
	return func(ev *Event, rewritable bool) []byte {
		*evs = append(*evs, seen{ev.Type, ev.ID, string(ev.Data), ev.HasID, ev.Retry})
		if repl != nil {
			return repl(ev)
		}
		return nil
	}
}

// feed runs the stream through an SSEStream in the given chunks and returns the concatenated
// output and the events visited.
func feed(t *testing.T, chunks [][]byte, hold func(i int) bool, repl func(*Event) []byte) (string, []seen) {
	t.Helper()
	s := NewSSEStream(1 << 20)
	var out bytes.Buffer
	var evs []seen
	for i, c := range chunks {
		eos := i == len(chunks)-1
		o, changed, err := s.Next(c, eos, hold(i), collect(&evs, repl))
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if !changed && !bytes.Equal(o, c) {
			t.Fatalf("chunk %d: unchanged output differs from the chunk", i)
		}
		out.Write(o)
	}
	return out.String(), evs
}

func split(s string, cuts ...int) [][]byte {
	var out [][]byte
	prev := 0
	for _, c := range cuts {
		out = append(out, []byte(s[prev:c]))
		prev = c
	}
	return append(out, []byte(s[prev:]))
}

func never(int) bool  { return false }
func always(int) bool { return true }

func TestSSEEvents(t *testing.T) {
	_, evs := feed(t, split(sampleStream), never, nil)
	want := []seen{
		{"endpoint", "", "/message?sessionId=é-1", false, ""},
		{"message", "1", "{\"jsonrpc\":\"2.0\",\"id\":1,\n\"result\":{\"tools\":[]}}", true, ""},
		{"", "", "REPLACE me", false, ""},
		{"", "", "x\n", false, ""},
		{"", "", `{"id":2}`, false, "10"},
		{"", "", "unterminated", false, ""}, // the stream's end ends it (as the go-sdk client reads it)
	}
	if fmt.Sprint(evs) != fmt.Sprint(want) {
		t.Fatalf("events\n got %+v\nwant %+v", evs, want)
	}
}

func replaceMarked(ev *Event) []byte {
	if bytes.HasPrefix(ev.Data, []byte("REPLACE")) {
		return AppendEvent(nil, &Event{Type: "message", Data: []byte("replaced\nline")})
	}
	return nil
}

// TestSSEEverySplit cuts the stream at every pair of positions (inside "data:", inside CR LF,
// inside the two-byte é, inside the BOM) and checks that the events and the output do not depend
// on where the cuts fall.
func TestSSEEverySplit(t *testing.T) {
	refOut, refEvs := feed(t, split(sampleStream), never, replaceMarked)
	if !strings.Contains(refOut, "data: replaced\ndata: line\n\n") || strings.Contains(refOut, "REPLACE") {
		t.Fatalf("reference rewrite wrong: %q", refOut)
	}
	n := len(sampleStream)
	for i := 0; i <= n; i++ {
		for j := i; j <= n; j++ {
			chunks := split(sampleStream, i, j)
			out, evs := feed(t, chunks, never, nil)
			if out != sampleStream {
				t.Fatalf("cuts %d,%d: passthrough changed the stream", i, j)
			}
			if fmt.Sprint(evs) != fmt.Sprint(refEvs) {
				t.Fatalf("cuts %d,%d: events %+v, want %+v", i, j, evs, refEvs)
			}
			out, evs = feed(t, chunks, always, replaceMarked)
			if out != refOut || fmt.Sprint(evs) != fmt.Sprint(refEvs) {
				t.Fatalf("cuts %d,%d: rewrite gave %q", i, j, out)
			}
		}
	}
}

// TestSSEHoldSwitchesOn: rewriting becomes needed midway; the event that began before can only be
// observed, the later ones are rewritten.
func TestSSEHoldSwitchesOn(t *testing.T) {
	stream := "data: REPLACE early\n" + "\ndata: REPLACE late\n\n"
	chunks := split(stream, 10, 25)
	out, _ := feed(t, chunks, func(i int) bool { return i >= 1 }, replaceMarked)
	if out != "data: REPLACE early\n\nevent: message\ndata: replaced\ndata: line\n\n" {
		t.Fatalf("out = %q", out)
	}
}

// TestSSEEndEndsTheEvent: the go-sdk client dispatches an event the stream ends without its blank
// line (and reads a last line without its line end), so such an event is visited and rewritten
// like a complete one, whatever the chunks, rather than passed on unread.
func TestSSEEndEndsTheEvent(t *testing.T) {
	for _, stream := range []string{
		"data: a\n\ndata: REPLACE me",
		"data: a\n\ndata: REPLACE me\n",
		"data: a\n\ndata: REPLACE me\r",
		"data: a\n\nid: 7\ndata: REPLACE me\r\n",
	} {
		for i := 0; i <= len(stream); i++ {
			for _, hold := range []func(int) bool{always, never} {
				out, evs := feed(t, split(stream, i), hold, replaceMarked)
				if len(evs) != 2 || !strings.HasPrefix(evs[1].data, "REPLACE") {
					t.Fatalf("%q cut at %d: events %+v, want the last one visited", stream, i, evs)
				}
				if hold(0) && (strings.Contains(out, "REPLACE") || !strings.HasSuffix(out, "data: replaced\ndata: line\n\n")) {
					t.Fatalf("%q cut at %d, held: out %q, want the last event replaced", stream, i, out)
				}
			}
		}
	}
}

func TestSSEHoldKeepsIncompleteEvent(t *testing.T) {
	s := NewSSEStream(1 << 20)
	var evs []seen
	out, changed, err := s.Next([]byte("data: a\n\ndata: b"), false, true, collect(&evs, nil))
	if err != nil || !changed || string(out) != "data: a\n\n" {
		t.Fatalf("first = %q %v %v", out, changed, err)
	}
	out, changed, err = s.Next([]byte("c\n"), false, true, collect(&evs, nil))
	if err != nil || !changed || len(out) != 0 {
		t.Fatalf("second = %q %v %v (must hold everything)", out, changed, err)
	}
	out, _, err = s.Next([]byte("\n"), false, false, collect(&evs, nil))
	if err != nil || string(out) != "data: bc\n\n" {
		t.Fatalf("third = %q %v", out, err)
	}
	if len(evs) != 2 || evs[1].data != "bc" {
		t.Fatalf("events %+v", evs)
	}
}

func TestSSELimit(t *testing.T) {
	big := "data: " + strings.Repeat("x", 100) + "\n\ndata: small\n\n"
	s := NewSSEStream(32)
	var evs []seen
	var out bytes.Buffer
	for _, c := range split(big, 20, 50, 90, 110) {
		o, _, err := s.Next(c, false, false, collect(&evs, nil))
		if err != nil {
			t.Fatal(err)
		}
		out.Write(o)
	}
	if out.String() != big || s.Dropped != 1 || len(evs) != 1 || evs[0].data != "small" {
		t.Fatalf("out %q dropped %d events %+v", out.String(), s.Dropped, evs)
	}
	s = NewSSEStream(32)
	if _, _, err := s.Next([]byte(big[:60]), false, true, collect(&evs, nil)); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("holding an oversize event: err = %v", err)
	}
}

func TestAppendEvent(t *testing.T) {
	got := string(AppendEvent(nil, &Event{Type: "message", ID: "7", HasID: true, Data: []byte("a\nb")}))
	if got != "event: message\nid: 7\ndata: a\ndata: b\n\n" {
		t.Errorf("AppendEvent = %q", got)
	}
	got = string(AppendEvent(nil, &Event{Type: "close", Retry: "250"}))
	if got != "event: close\nretry: 250\ndata: \n\n" {
		t.Errorf("AppendEvent with a retry field = %q", got)
	}
}

// TestSSERetry: a retry field of ASCII digits is the event's Retry (the latest of an event's);
// any other value is ignored, as WHATWG reads it.
func TestSSERetry(t *testing.T) {
	_, evs := feed(t, split("retry: 5s\ndata: a\n\nretry: 1\nretry:20\ndata: b\n\nretry: -3\ndata: c\n\n"), never, nil)
	want := []seen{{"", "", "a", false, ""}, {"", "", "b", false, "20"}, {"", "", "c", false, ""}}
	if fmt.Sprint(evs) != fmt.Sprint(want) {
		t.Fatalf("events\n got %+v\nwant %+v", evs, want)
	}
}

// TestSSEDataless: an event without a data field is visited when it gives an id or a retry delay
// (WHATWG applies both), not otherwise (a comment, an event type alone).
func TestSSEDataless(t *testing.T) {
	_, evs := feed(t, split("retry: 500\n\n: comment\n\nevent: close\n\nid: 7\n\nevent: close\nretry: 9\n\ndata: x\n\n"), never, nil)
	want := []seen{{"", "", "", false, "500"}, {"", "7", "", true, ""}, {"close", "", "", false, "9"}, {"", "", "x", false, ""}}
	if fmt.Sprint(evs) != fmt.Sprint(want) {
		t.Fatalf("events\n got %+v\nwant %+v", evs, want)
	}
}

func FuzzSSEStream(f *testing.F) {
	f.Add([]byte(sampleStream), uint64(1), uint8(3))
	f.Add([]byte("data: a\r\n\r\ndata: b\r\r"), uint64(7), uint8(5))
	f.Add([]byte("\xEF\xBB"), uint64(0), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64, pieces uint8) {
		r := rand.New(rand.NewPCG(seed, 1))
		var cuts []int
		for range int(pieces % 16) {
			cuts = append(cuts, r.IntN(len(stream)+1))
		}
		slices.Sort(cuts)
		chunks := split(string(stream), cuts...)
		one, refEvs := feed(t, [][]byte{stream}, never, nil)
		if one != string(stream) {
			t.Fatal("passthrough changed the stream")
		}
		out, evs := feed(t, chunks, never, nil)
		if out != string(stream) || fmt.Sprint(evs) != fmt.Sprint(refEvs) {
			t.Fatalf("split stream differs: %+v vs %+v", evs, refEvs)
		}
		refOut, _ := feed(t, [][]byte{stream}, always, replaceMarked)
		out, _ = feed(t, chunks, always, replaceMarked)
		if out != refOut {
			t.Fatalf("split rewrite %q, want %q", out, refOut)
		}
	})
}
