package authz

import (
	"errors"

	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// item returns the MCP item in concerns: the one its method names (a tools/call whose name is
// empty still concerns a tool) or Item, else, for an Input without either, the one whose name is
// set.
func (in *Input) item() mcp.Item {
	if it := mcp.ItemOf(in.MCPMethod); it != mcp.NoItem {
		return it
	}
	if in.Item != mcp.NoItem {
		return in.Item
	}
	switch {
	case in.ToolName != "":
		return mcp.Tool
	case in.PromptName != "":
		return mcp.Prompt
	case in.ResourceName != "":
		return mcp.Resource
	}
	return mcp.NoItem
}

// name returns the name of the item it of in.
func (in *Input) name(it mcp.Item) string {
	switch it {
	case mcp.Tool:
		return in.ToolName
	case mcp.Prompt:
		return in.PromptName
	case mcp.Resource:
		return in.ResourceName
	}
	return ""
}

// errNotApplicable is what reading mcp.tool, mcp.prompt or mcp.resource gives in a request that
// concerns another item or none: a rule whose outcome it decides does not apply to the request
// (see the package documentation).
var errNotApplicable = errors.New("not applicable: the request concerns another MCP item or none")
