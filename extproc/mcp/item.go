package mcp

import (
	"encoding/json"
	"strings"
)

// Item is the kind of MCP item a request names (tools/call a tool, prompts/get a prompt,
// resources/read a resource) and a list result lists, which the gateway's MCP rules decide on.
type Item uint8

// The items.
const (
	// NoItem: the request names no single item (initialize, tools/list, a notification...).
	NoItem Item = iota
	// Tool: tools/call; listed by tools/list.
	Tool
	// Prompt: prompts/get; listed by prompts/list.
	Prompt
	// Resource: resources/read, resources/subscribe and resources/unsubscribe, named by URI;
	// listed by resources/list (URIs) and resources/templates/list (URI templates).
	Resource
)

// ItemOf returns the item the method names.
func ItemOf(method string) Item {
	switch method {
	case MethodToolsCall:
		return Tool
	case "prompts/get":
		return Prompt
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		return Resource
	}
	return NoItem
}

// String returns the item's name as MCP writes it in errors and as the gateway writes it in ids
// and details: "tool", "prompt", "resource" ("" for NoItem).
func (it Item) String() string {
	switch it {
	case Tool:
		return "tool"
	case Prompt:
		return "prompt"
	case Resource:
		return "resource"
	}
	return ""
}

// Lists reports whether the method's result lists items: tools/list, prompts/list, resources/list,
// resources/templates/list.
func Lists(method string) bool {
	switch method {
	case MethodToolsList, "prompts/list", "resources/list", "resources/templates/list":
		return true
	}
	return false
}

// Unknown is the answer to a refused request for an item: the error a server gives for an item it
// does not have ("Unknown tool: NAME", "Unknown prompt: NAME", "Unknown resource: URI", JSON-RPC
// -32602, as agentgateway), so that the caller does not learn that it exists.
func Unknown(id json.RawMessage, it Item, name string) []byte {
	return ErrorResponse(id, CodeInvalidParams, "Unknown "+it.String()+": "+name)
}

// Separator is the byte that joins a multiplexed backend's target name to an item's name: '_'
// for tools and prompts ("TARGET_name"), '+' for resource URIs and URI templates ("TARGET+uri"),
// as agentgateway writes them; 0 for NoItem.
func (it Item) Separator() byte {
	switch it {
	case Tool, Prompt:
		return '_'
	case Resource:
		return '+'
	}
	return 0
}

// SplitTarget splits the name of an item of a multiplexed backend (docs/design.md,
// "Multiplexing") into its target and the target's own name: "TARGET_name" at the first '_' for a
// tool or prompt, "TARGET+uri" at the first '+' for a resource (it.Separator). targets lists the
// backend's target names joined by commas (contract.MetadataTargets); the prefix counts only
// when it is one of them. ok is false (target "", rest the whole name) otherwise. The ext_proc
// front hop and the mux both split with it, so that the rules judge the item the mux calls.
func SplitTarget(it Item, name, targets string) (target, rest string, ok bool) {
	sep := it.Separator()
	if sep == 0 {
		return "", name, false
	}
	i := strings.IndexByte(name, sep)
	if i <= 0 {
		return "", name, false
	}
	prefix := name[:i]
	for more := true; more; {
		var t string
		t, targets, more = strings.Cut(targets, ",")
		if t == prefix {
			return prefix, name[i+1:], true
		}
	}
	return "", name, false
}
