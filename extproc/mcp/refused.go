package mcp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
)

// RefusedIDPrefix starts the id of the ping that stands in for a refused tools/call (RefusedID).
const RefusedIDPrefix = "mcpgate-refused:"

// RefusedID returns the id of the ping that stands in for the refused tools/call of tool whose
// raw JSON id is id: a JSON string, RefusedIDPrefix followed by base64url (unpadded) of
// {"id":ID,"tool":TOOL}. The answer to the ping carries everything needed to turn it into the
// call's "Unknown tool" error (RefusedAnswer), so that any gateway replica that sees the answer
// can, without the state of the one that saw the request: a legacy SSE session's POSTs and its
// GET stream may pass different pods.
func RefusedID(id json.RawMessage, tool string) json.RawMessage {
	name, _ := json.Marshal(tool)
	payload := make([]byte, 0, 16+len(id)+len(name))
	payload = append(payload, `{"id":`...)
	payload = append(payload, trimJSON(id)...)
	payload = append(payload, `,"tool":`...)
	payload = append(payload, name...)
	payload = append(payload, '}')
	enc := base64.RawURLEncoding
	out := make([]byte, 0, 2+len(RefusedIDPrefix)+enc.EncodedLen(len(payload)))
	out = append(out, '"')
	out = append(out, RefusedIDPrefix...)
	out = enc.AppendEncode(out, payload)
	return append(out, '"')
}

// RefusedAnswer returns, when the raw JSON id of an answer is a RefusedID (a string starting with
// RefusedIDPrefix), the answer that replaces it: the "Unknown tool" error with the refused call's
// own id, or, when what follows the prefix cannot be read, an error with the id as it is. ok is
// false for every other id.
//
// Whoever sends a request with such an id gets such an error in answer: a client that forges one
// gets an error for itself, in its own session, and nothing else.
func RefusedAnswer(id json.RawMessage) (answer []byte, ok bool) {
	b := trimJSON(id)
	if len(b) < 2 || b[0] != '"' || (!bytes.HasPrefix(b[1:], []byte(RefusedIDPrefix)) && bytes.IndexByte(b, '\\') < 0) {
		return nil, false
	}
	s, valid := stringValue(b)
	if !valid || !strings.HasPrefix(s, RefusedIDPrefix) {
		return nil, false
	}
	orig, tool, readable := readRefused(s[len(RefusedIDPrefix):])
	if !readable {
		return ErrorResponse(b, CodeInvalidParams, "mcpgate: refused call"), true
	}
	return UnknownTool(orig, tool), true
}

// readRefused decodes what RefusedID put after the prefix: exactly the members id (a valid
// JSON-RPC id: string, number or null) and tool (a string), once each.
func readRefused(enc string) (id json.RawMessage, tool string, ok bool) {
	payload, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return nil, "", false
	}
	var rawTool []byte
	err = eachMember(payload, func(mb member) error {
		switch {
		case string(mb.name) == "id" && id == nil:
			id = mb.value
		case string(mb.name) == "tool" && rawTool == nil:
			rawTool = mb.value
		default:
			return errFound
		}
		return nil
	})
	if err != nil || IDKey(id) == "" || rawTool == nil {
		return nil, "", false
	}
	tool, ok = stringValue(rawTool)
	return id, tool, ok
}
