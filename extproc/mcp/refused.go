package mcp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
)

// RefusedIDPrefix starts the id of the ping that stands in for a refused request for an item
// (RefusedID).
const RefusedIDPrefix = "mcpgate-refused:"

// RefusedID returns the id of the ping that stands in for the refused request (tools/call,
// prompts/get, resources/read...) for the item it named name, whose raw JSON id is id: a JSON
// string, RefusedIDPrefix followed by base64url (unpadded) of {"id":ID,"ITEM":NAME}, ITEM being
// "tool", "prompt" or "resource". The answer to the ping carries everything needed to turn it
// into the request's "Unknown ..." error (RefusedAnswer), so that any gateway replica that sees
// the answer can, without the state of the one that saw the request: a legacy SSE session's POSTs
// and its GET stream may pass different pods.
func RefusedID(id json.RawMessage, it Item, name string) json.RawMessage {
	quoted, _ := json.Marshal(name)
	word := it.String()
	payload := make([]byte, 0, 16+len(id)+len(word)+len(quoted))
	payload = append(payload, `{"id":`...)
	payload = append(payload, trimJSON(id)...)
	payload = append(payload, `,"`...)
	payload = append(payload, word...)
	payload = append(payload, `":`...)
	payload = append(payload, quoted...)
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
	orig, it, name, readable := readRefused(s[len(RefusedIDPrefix):])
	if !readable {
		return ErrorResponse(b, CodeInvalidParams, "mcpgate: refused call"), true
	}
	return Unknown(orig, it, name), true
}

// readRefused decodes what RefusedID put after the prefix: exactly the members id (a valid
// JSON-RPC id: string, number or null) and one of tool, prompt and resource (a string), once each.
func readRefused(enc string) (id json.RawMessage, it Item, name string, ok bool) {
	payload, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return nil, NoItem, "", false
	}
	var rawName []byte
	err = eachMember(payload, func(mb member) error {
		var named Item
		switch string(mb.name) {
		case "id":
			if id != nil {
				return errFound
			}
			id = mb.value
			return nil
		case "tool":
			named = Tool
		case "prompt":
			named = Prompt
		case "resource":
			named = Resource
		default:
			return errFound
		}
		if rawName != nil {
			return errFound
		}
		it, rawName = named, mb.value
		return nil
	})
	if err != nil || IDKey(id) == "" || rawName == nil {
		return nil, NoItem, "", false
	}
	name, ok = stringValue(rawName)
	return id, it, name, ok
}
