package mcp

import (
	"bytes"
	"errors"
)

// Event is one server-sent event (WHATWG HTML "event stream interpretation").
type Event struct {
	// Type is the event field; "" means the default type "message".
	Type string
	// Data is the data lines joined with "\n".
	Data []byte
	// ID is the id field when HasID.
	ID string
	// HasID is set when the event has an id field (one without NUL), even an empty one.
	HasID bool
	// Retry is the retry field, the reconnection delay in milliseconds the server asks for
	// (ASCII digits only, as WHATWG reads it; "" when the event has none): MCP servers send it
	// before they close a stream the client is to resume (SSE polling).
	Retry string
}

// IsMessage reports whether the event has the default type "message".
func (e *Event) IsMessage() bool { return e.Type == "" || e.Type == "message" }

// AppendEvent encodes e and the blank line that ends it.
func AppendEvent(dst []byte, e *Event) []byte {
	if e.Type != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, e.Type...)
		dst = append(dst, '\n')
	}
	if e.HasID {
		dst = append(dst, "id: "...)
		dst = append(dst, e.ID...)
		dst = append(dst, '\n')
	}
	dst = AppendRetry(dst, e.Retry)
	data := e.Data
	for {
		line, rest, more := bytes.Cut(data, []byte{'\n'})
		dst = append(dst, "data: "...)
		dst = append(dst, line...)
		dst = append(dst, '\n')
		if !more {
			break
		}
		data = rest
	}
	return append(dst, '\n')
}

// AppendRetry appends the retry field of a delay of retry milliseconds (Event.Retry), nothing
// when retry is "".
func AppendRetry(dst []byte, retry string) []byte {
	if retry == "" {
		return dst
	}
	dst = append(dst, "retry: "...)
	dst = append(dst, retry...)
	return append(dst, '\n')
}

// ErrEventTooLarge is returned by SSEStream.Next when an event that may need rewriting outgrows the
// stream's limit: the gateway can neither hold it back further nor pass it unexamined.
var ErrEventTooLarge = errors.New("server-sent event larger than the limit")

// Visit is called by SSEStream.Next for every complete event, in order: every event with a data
// field, and every event without one that gives an id or a retry delay (WHATWG dispatches only
// the former, but applies the latter's id and retry: a priming event, or a retry before the
// server closes a stream, has an effect on the client). rewritable is false when
// the event began in bytes already passed on (it started before rewriting was needed). A non-nil
// return replaces the event's bytes when rewritable; nil keeps them.
type Visit func(ev *Event, rewritable bool) []byte

// SSEStream reads a text/event-stream body chunk by chunk, as Envoy streams it to ext_proc, and
// decides what each chunk becomes: the chunk itself when nothing changes (the common case, no
// copy), or the chunk with complete events replaced and, while rewriting may be needed, the
// incomplete last event held back until its end arrives. Chunks may split anything: a field name,
// a CR LF pair, a UTF-8 sequence.
type SSEStream struct {
	limit int
	// buf holds the stream's bytes from offset off: those not yet passed on and the unfinished
	// line.
	buf []byte
	off int64
	// end is the offset after the last byte seen; emit the offset up to which bytes were passed
	// on; ev the start of the unfinished event; line the start of the unfinished line.
	end, emit, ev, line int64
	// scanned is the offset up to which the stream was searched for line ends.
	scanned int64
	// skipLF: the last line ended with CR at the end of a chunk, so a leading LF belongs to it;
	// dropLF: that line ended an event that was replaced, so the LF goes too.
	skipLF, dropLF bool
	// bomDone: the stream's start was checked for a byte order mark.
	bomDone bool
	// discard: the unfinished event outgrew the limit; its fields are dropped and it is not
	// visited. lineEmpty tells then whether the unfinished line has any bytes.
	discard, lineEmpty bool
	cur                eventBuilder
	// Dropped counts the events not visited because they outgrew the limit.
	Dropped int
}

// NewSSEStream returns a stream reader that keeps at most limit bytes of one event.
func NewSSEStream(limit int) *SSEStream {
	return &SSEStream{limit: limit}
}

type eventBuilder struct {
	typ, data, id, retry []byte
	hasID, hasData       bool
}

func (b *eventBuilder) reset() {
	b.typ, b.data, b.id, b.retry = b.typ[:0], b.data[:0], b.id[:0], b.retry[:0]
	b.hasID, b.hasData = false, false
}

func (b *eventBuilder) field(line []byte) {
	if len(line) == 0 || line[0] == ':' {
		return
	}
	name, value, _ := bytes.Cut(line, []byte{':'})
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	switch string(name) {
	case "event":
		b.typ = append(b.typ[:0], value...)
	case "data":
		b.data = append(b.data, value...)
		b.data = append(b.data, '\n')
		b.hasData = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			b.id = append(b.id[:0], value...)
			b.hasID = true
		}
	case "retry":
		// WHATWG: a value of ASCII digits only sets the reconnection time; any other is ignored.
		if len(value) > 0 && len(bytes.TrimLeft(value, "0123456789")) == 0 {
			b.retry = append(b.retry[:0], value...)
		}
	}
}

// dispatched reports whether the event is visited (Visit).
func (b *eventBuilder) dispatched() bool { return b.hasData || b.hasID || len(b.retry) > 0 }

func (b *eventBuilder) size() int { return len(b.typ) + len(b.data) + len(b.id) + len(b.retry) }

func (b *eventBuilder) event() Event {
	data := b.data
	if len(data) > 0 {
		data = data[:len(data)-1]
	}
	return Event{
		Type:  string(b.typ),
		Data:  bytes.Clone(data),
		ID:    string(b.id),
		HasID: b.hasID,
		Retry: string(b.retry),
	}
}

// Next takes the next chunk of the body (eos on the last one) and returns what to send instead.
// changed is false when out is chunk itself. hold asks to keep back the incomplete last event
// because a rewrite may be needed; at eos the last event is complete, whatever its end.
func (s *SSEStream) Next(chunk []byte, eos, hold bool, visit Visit) (out []byte, changed bool, err error) {
	start := s.end
	var full []byte
	if len(s.buf) == 0 {
		full = chunk
		s.off = start
	} else {
		s.buf = append(s.buf, chunk...)
		full = s.buf
	}
	s.end += int64(len(chunk))
	at := func(o int64) int { return int(o - s.off) }
	outPos := s.emit
	replaced := false
	// dispatch visits the event that ends at end, and puts its replacement, if any, in out.
	dispatch := func(end int64) {
		ev := s.cur.event()
		rewritable := s.ev >= outPos
		if repl := visit(&ev, rewritable); repl != nil && rewritable {
			out = append(out, full[at(outPos):at(s.ev)]...)
			out = append(out, repl...)
			outPos = end
			replaced = true
			s.dropLF = s.skipLF
		}
	}

	// In discard mode the start of the unfinished line may have been dropped already.
	pos := max(s.line, s.off)
	if !s.bomDone {
		b := full[at(pos):]
		switch {
		case len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF:
			pos += 3
			s.bomDone = true
		case len(b) >= 3 || !bytes.HasPrefix([]byte{0xEF, 0xBB, 0xBF}, b) || eos:
			s.bomDone = true
		}
	}
	if s.bomDone {
		if s.skipLF && pos < s.end {
			if full[at(pos)] == '\n' {
				if s.ev == pos {
					// The LF ends the blank line that ended the last event; it is no part of
					// the next one. If that event was replaced, its replacement has its own end.
					s.ev++
					if s.dropLF {
						outPos++
					}
				}
				pos++
			}
			s.skipLF, s.dropLF = false, false
		}
		// carry: in discard mode, the unfinished line may have bytes that were dropped.
		carry := s.discard && !s.lineEmpty
		sawTerminator := false
		for pos < s.end {
			// Bytes of the unfinished line seen in earlier chunks hold no line end.
			from := max(pos, s.scanned)
			i := bytes.IndexAny(full[at(from):], "\r\n")
			if i < 0 {
				break
			}
			i += int(from - pos)
			rel := full[at(pos):]
			sawTerminator = true
			next := pos + int64(i) + 1
			if rel[i] == '\r' {
				if next < s.end {
					if full[at(next)] == '\n' {
						next++
					}
				} else {
					s.skipLF = true
				}
			}
			line := rel[:i]
			blank := i == 0 && !carry
			carry = false
			pos = next
			if !blank {
				if !s.discard {
					s.cur.field(line)
				}
				continue
			}
			switch {
			case s.discard:
				s.Dropped++
				s.discard = false
			case s.cur.dispatched():
				dispatch(pos)
			}
			s.cur.reset()
			s.ev = pos
		}
		s.scanned = s.end
		if s.discard {
			s.lineEmpty = (sawTerminator && pos == s.end) || (!sawTerminator && s.lineEmpty && len(chunk) == 0)
		}
		if eos && !s.discard {
			// The end of the stream ends its last line and event: WHATWG drops an event
			// without its blank line, but the go-sdk client dispatches it (and the last line
			// without its line end), so it is read and rewritten as a complete one.
			if pos < s.end {
				s.cur.field(full[at(pos):])
				pos = s.end
			}
			if s.cur.dispatched() {
				dispatch(pos)
			}
			s.cur.reset()
			s.ev = pos
		}
	}
	s.line = pos

	holdFrom := s.end
	if hold && !eos {
		holdFrom = max(s.ev, outPos)
	}
	keepFrom := min(holdFrom, s.line)
	if s.discard {
		keepFrom = holdFrom
	}
	if max(int(s.end-keepFrom), s.cur.size()) > s.limit {
		if holdFrom < s.end {
			return nil, false, ErrEventTooLarge
		}
		// Too large to examine: pass it on and skip to its end.
		s.discard = true
		s.lineEmpty = s.line == s.end
		s.cur.reset()
		keepFrom = holdFrom
	}

	unchanged := !replaced && outPos == start && holdFrom == s.end
	if !unchanged && holdFrom > outPos {
		out = append(out, full[at(outPos):at(holdFrom)]...)
	}
	s.emit = holdFrom

	rest := full[at(keepFrom):]
	s.buf = append(s.buf[:0], rest...)
	s.off = keepFrom
	if eos {
		s.buf = nil
	}
	if unchanged {
		return chunk, false, nil
	}
	if out == nil {
		out = []byte{}
	}
	return out, true, nil
}
