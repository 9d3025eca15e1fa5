package mux

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// EventIDPrefix starts every event id the mux gives the client (version 1 of its form):
// EventIDPrefix + base64url (unpadded) of KIND, then for each target "\n" + TARGET + ":" + the
// target's own event id. KIND is 'c' for an event of one target's answer to a routed request (a
// call's stream: one target), 'g' for an event of the merged GET stream (every target of the
// session that has given an event id on that stream, each with the latest it gave). Target names
// hold no ":" (contract.MuxTarget.Check) and SSE event ids no line break, so the form is
// unambiguous. The client sends it back as Last-Event-ID on a GET to resume the stream.
const EventIDPrefix = "m1."

// Kinds of stream an event id names (EventIDPrefix).
const (
	// callStream: one target's answer to a routed request.
	callStream = 'c'
	// getStream: the session's merged GET stream.
	getStream = 'g'
)

// streamPosition is where a client is in a stream the mux relays: the kind of stream and, per
// target, the target's own event id (the last event the client has of it).
type streamPosition struct {
	kind byte
	// names and ids are the targets and their event ids, in the same order; a target without an
	// event id yet is not in them.
	names, ids []string
}

// appendEventID appends the event id of p (EventIDPrefix form) to dst; scratch is a buffer the
// id is built in first, returned for reuse. A position without any target id has no id: dst is
// returned as it is.
func appendEventID(dst, scratch []byte, kind byte, names, ids []string) (out, scratchOut []byte) {
	if cap(scratch) == 0 {
		scratch = make([]byte, 0, 128) // one allocation for most ids
	}
	scratch = append(scratch[:0], kind)
	n := 0
	for i, id := range ids {
		if id == "" {
			continue
		}
		scratch = append(scratch, '\n')
		scratch = append(scratch, names[i]...)
		scratch = append(scratch, ':')
		scratch = append(scratch, id...)
		n++
	}
	if n == 0 {
		return dst, scratch
	}
	dst = append(dst, "id: "+EventIDPrefix...)
	dst = base64.RawURLEncoding.AppendEncode(dst, scratch)
	return append(dst, '\n'), scratch
}

// errEventID is the error of an id that is not one the mux gave.
var errEventID = errors.New("not an event id of mcpgate's mux (" + EventIDPrefix + "...)")

// decodeEventID decodes a Last-Event-ID value the mux gave (EventIDPrefix).
func decodeEventID(v string) (*streamPosition, error) {
	rest, ok := strings.CutPrefix(v, EventIDPrefix)
	if !ok {
		return nil, errEventID
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%w: its base64url does not decode", errEventID)
	}
	p := &streamPosition{kind: b[0]}
	if p.kind != callStream && p.kind != getStream {
		return nil, fmt.Errorf("%w: unknown stream kind %q", errEventID, p.kind)
	}
	entries := strings.Split(string(b[1:]), "\n")
	if entries[0] != "" {
		return nil, fmt.Errorf("%w: no line break after the stream kind", errEventID)
	}
	for _, e := range entries[1:] {
		name, id, found := strings.Cut(e, ":")
		switch {
		case !found || name == "" || id == "":
			return nil, fmt.Errorf("%w: entry %q is not TARGET:ID", errEventID, e)
		case p.id(name) != "":
			return nil, fmt.Errorf("%w: target %q named twice", errEventID, name)
		}
		p.names, p.ids = append(p.names, name), append(p.ids, id)
	}
	switch {
	case len(p.names) == 0:
		return nil, fmt.Errorf("%w: it names no target", errEventID)
	case p.kind == callStream && len(p.names) != 1:
		return nil, fmt.Errorf("%w: a call's stream names one target, not %d", errEventID, len(p.names))
	}
	return p, nil
}

// id returns the event id of target name in p ("": none).
func (p *streamPosition) id(name string) string {
	for i, n := range p.names {
		if n == name {
			return p.ids[i]
		}
	}
	return ""
}
