package mcp

// RequestKind is what an HTTP request on an MCP route is, read from the request itself. Servers
// often serve both transports (the go-sdk's /sse and /mcp) and a gateway passes each client's
// transport unchanged, so the transport a target declares says nothing about a given request.
type RequestKind uint8

const (
	// RequestOther is a method neither transport uses (OPTIONS, HEAD, ...).
	RequestOther RequestKind = iota
	// RequestPost is a Streamable HTTP POST: the answers to its requests come in its own response
	// (application/json, or text/event-stream that may also carry server requests).
	RequestPost
	// RequestLegacyPost is a legacy HTTP+SSE message POST (to the endpoint the GET stream
	// announced): the answers come on the session's GET stream; its own response is a bare 202.
	RequestLegacyPost
	// RequestGet is a GET stream: legacy HTTP+SSE when its first event is an endpoint event, else
	// a Streamable HTTP server-to-client stream (server requests, notifications, replayed answers).
	RequestGet
	// RequestDelete is the end of a Streamable HTTP session.
	RequestDelete
)

// SessionHeader is the Streamable HTTP session header, as Envoy hands header names (lower case).
const SessionHeader = "mcp-session-id"

// ValidSessionID reports whether id is made of visible ASCII only (0x21 to 0x7E), as the MCP
// specification requires of a session id (Streamable HTTP, Session Management), and is not empty.
func ValidSessionID(id string) bool {
	if id == "" {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// ClassifyRequest returns the kind of a request on an MCP route from its HTTP method, its path
// (with the query), its Mcp-Session-Id header and whether a body may follow its headers, and the
// session it belongs to as far as the request tells: the legacy session query parameter (see
// SessionFromURL) for a legacy POST, else the Mcp-Session-Id. The session is "" when the request
// does not tell it: Streamable HTTP's initialize gets it in its answer's Mcp-Session-Id, a legacy
// GET stream in its endpoint event.
//
// A request is a legacy POST when it carries a non-empty legacy session query parameter and no
// Mcp-Session-Id, and is a POST or has a body (JudgedAsPost): a legacy SSE server may run the
// body of any method (the Python SDK's message handler never checks the method). Every other
// POST is Streamable HTTP; a GET, DELETE or other method keeps its kind.
func ClassifyRequest(method, path, mcpSessionID string, body bool) (RequestKind, string) {
	if JudgedAsPost(method, body) && mcpSessionID == "" {
		if s := SessionFromURL(path); s != "" {
			return RequestLegacyPost, s
		}
	}
	switch method {
	case "POST":
		return RequestPost, mcpSessionID
	case "GET":
		return RequestGet, mcpSessionID
	case "DELETE":
		return RequestDelete, mcpSessionID
	}
	return RequestOther, mcpSessionID
}

// JudgedAsPost reports whether a request of this method is judged as a POST, whose body holds
// MCP messages: a POST, or a request of any method with a body (body: its headers did not end
// the request). A server may read messages from the body of any method.
func JudgedAsPost(method string, body bool) bool {
	return method == "POST" || body
}

// AmbiguousSession returns why the session of a request judged as a POST (JudgedAsPost) with
// this path (and query) and Mcp-Session-Id could be read differently by the server and the
// gateway, or "" when it cannot:
//   - a legacy session query parameter and an Mcp-Session-Id: the gateway takes the request for
//     Streamable HTTP, a legacy SSE server for a message of the query's session, whose answers
//     go to that session's GET stream;
//   - more than one legacy session query parameter (SessionParams): servers read different ones;
//   - a session parameter's name followed by "[" (BracketedSessionParam): Express's qs reads
//     sessionId[]=ID as the session ID, where the gateway sees no session parameter.
func AmbiguousSession(path, mcpSessionID string) string {
	_, n := SessionParams(path)
	switch {
	case BracketedSessionParam(path) != "":
		return "a request names its legacy SSE session in a query parameter sessionId, sessionid or session_id, not in one of these names followed by [ (Express reads sessionId[]=ID as the session ID)"
	case n > 0 && mcpSessionID != "":
		return "a request carries either a legacy SSE session query parameter (sessionId, sessionid, session_id) or an Mcp-Session-Id header, not both"
	case n > 1:
		return "a request carries at most one legacy SSE session query parameter (sessionId, sessionid, session_id)"
	}
	return ""
}
