package mcp

import "encoding/json"

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
