package mcp

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"
)

// The Streamable HTTP headers that mirror a request's body (MCP 2026-07-28, SEP-2243), as Envoy
// names them (lower case): Mcp-Method carries the method, Mcp-Name the params member NameMember
// names. Servers must refuse a request whose headers and body disagree (CodeHeaderMismatch).
const (
	MethodHeader = "mcp-method"
	NameHeader   = "mcp-name"
)

// CodeHeaderMismatch is MCP's JSON-RPC error for headers that disagree with the body, answered with
// HTTP 400.
const CodeHeaderMismatch = -32020

// NameMember returns the params member that Mcp-Name mirrors for method: "name" for tools/call and
// prompts/get, "uri" for resources/read, resources/subscribe and resources/unsubscribe, "" for the
// methods that name nothing.
func NameMember(method string) string {
	switch ItemOf(method) {
	case Tool, Prompt:
		return "name"
	case Resource:
		return "uri"
	}
	return ""
}

// StringParam reads the string member name of params. ok is false when params is not an object,
// or the member is absent or not a string. ambiguous is set when the member repeats or another
// member's name equals it only when case is folded: servers read such params differently.
func StringParam(params json.RawMessage, name string) (s string, ok, ambiguous bool) {
	raw, ambiguous := memberOf(params, name)
	if raw == nil {
		return "", false, ambiguous
	}
	s, ok = stringValue(raw)
	return s, ok, ambiguous
}

// MethodListen is MCP 2026-07-28's subscriptions/listen: a stream of the notifications its params
// ask for, among them the updates of the resources params.notifications.resourceSubscriptions
// names (as resources/subscribe did before).
const MethodListen = "subscriptions/listen"

// ListenResources returns the URIs of a subscriptions/listen's
// params.notifications.resourceSubscriptions (none when it has none); ok is false when they are
// not a list of strings, ambiguous as StringParam's at either level.
func ListenResources(params json.RawMessage) (uris []string, ok, ambiguous bool) {
	notifications, amb1 := memberOf(params, "notifications")
	subs, amb2 := memberOf(notifications, "resourceSubscriptions")
	ambiguous = amb1 || amb2
	if subs == nil {
		return nil, true, ambiguous
	}
	ok = eachElement(subs, func(elem []byte) error {
		s, isString := stringValue(elem)
		if !isString {
			return errNotString
		}
		uris = append(uris, s)
		return nil
	}) == nil
	return uris, ok, ambiguous
}

// errNotString stops ListenResources at an element that is not a string.
var errNotString = errors.New("not a string")

// memberOf returns the raw value of the member name of the object obj (nil when obj is not an
// object or has no such member); ambiguous as StringParam's.
func memberOf(obj []byte, name string) (raw []byte, ambiguous bool) {
	if len(obj) == 0 || obj[0] != '{' {
		return nil, false
	}
	err := eachMember(obj, func(mb member) error {
		switch {
		case string(mb.name) == name:
			ambiguous = ambiguous || raw != nil
			raw = mb.value
		case foldsTo(mb.name, []string{name}):
			ambiguous = true
		}
		return nil
	})
	if err != nil {
		return nil, ambiguous
	}
	return raw, ambiguous
}

// CompletionRef reads params.ref of a completion/complete (MethodComplete): the item the
// completion is for, a prompt (ref/prompt, its name) or a resource (ref/resource, its uri, a
// URI or URI template). ok is false when params.ref is not an object with one of those types
// and a non-empty string name or uri; ambiguous as StringParam's, for any member read.
func CompletionRef(params json.RawMessage) (it Item, name string, ok, ambiguous bool) {
	ref, ambiguous := memberOf(params, "ref")
	typ, typOK, amb := StringParam(ref, "type")
	ambiguous = ambiguous || amb
	member := ""
	switch {
	case !typOK:
	case typ == "ref/prompt":
		it, member = Prompt, "name"
	case typ == "ref/resource":
		it, member = Resource, "uri"
	}
	if member == "" {
		return NoItem, "", false, ambiguous
	}
	name, ok, amb = StringParam(ref, member)
	return it, name, ok && name != "", ambiguous || amb
}

// Base64 sentinel of a mirrored header value that is not plain ASCII: =?base64?VALUE?=, VALUE the
// standard base64 of the UTF-8 bytes.
const (
	sentinelPrefix = "=?base64?"
	sentinelSuffix = "?="
)

// DecodeHeaderValue decodes a mirrored header value: printable ASCII (0x20 to 0x7E) is the value
// itself, except the base64 sentinel =?base64?VALUE?=, whose VALUE must be canonical standard
// base64 of UTF-8. ok is false for any other value: a byte outside printable ASCII, a sentinel
// that does not decode.
func DecodeHeaderValue(v string) (string, bool) {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7E {
			return "", false
		}
	}
	if !strings.HasPrefix(v, sentinelPrefix) || !strings.HasSuffix(v, sentinelSuffix) || len(v) < len(sentinelPrefix)+len(sentinelSuffix) {
		return v, true
	}
	b, err := base64.StdEncoding.Strict().DecodeString(v[len(sentinelPrefix) : len(v)-len(sentinelSuffix)])
	if err != nil || !utf8.Valid(b) {
		return "", false
	}
	return string(b), true
}

// EncodeHeaderValue encodes v as a mirrored header value: v itself when it is printable ASCII and
// not shaped as the sentinel, else the base64 sentinel. DecodeHeaderValue reverses it.
func EncodeHeaderValue(v string) string {
	plain := !strings.HasPrefix(v, sentinelPrefix) || !strings.HasSuffix(v, sentinelSuffix)
	for i := 0; plain && i < len(v); i++ {
		plain = v[i] >= 0x20 && v[i] <= 0x7E
	}
	if plain {
		return v
	}
	return sentinelPrefix + base64.StdEncoding.EncodeToString([]byte(v)) + sentinelSuffix
}
