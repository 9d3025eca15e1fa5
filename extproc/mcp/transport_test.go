package mcp

import "testing"

func TestClassifyRequest(t *testing.T) {
	tests := []struct {
		method, path, header string
		body                 bool
		kind                 RequestKind
		session              string
	}{
		// Legacy message POSTs of the TypeScript, Go and Python SDKs.
		{"POST", "/message?sessionId=694d", "", true, RequestLegacyPost, "694d"},
		{"POST", "/sse?sessionid=NUVA", "", true, RequestLegacyPost, "NUVA"},
		{"POST", "/messages/?session_id=9f0b", "", true, RequestLegacyPost, "9f0b"},
		// Streamable HTTP POSTs: initialize (no session yet) and the ones after it, whatever
		// the query says.
		{"POST", "/mcp", "", true, RequestPost, ""},
		{"POST", "/mcp", "S1", true, RequestPost, "S1"},
		{"POST", "/mcp?sessionId=x", "S1", true, RequestPost, "S1"},
		{"POST", "/message?sessionId=", "", true, RequestPost, ""},
		{"GET", "/sse", "", false, RequestGet, ""},
		{"GET", "/mcp", "S1", false, RequestGet, "S1"},
		{"DELETE", "/mcp", "S1", false, RequestDelete, "S1"},
		{"OPTIONS", "/mcp", "", false, RequestOther, ""},
		// A body, whatever the method, is judged as a POST's: a legacy SSE server may run it as
		// a message of its query's session (the Python SDK reads any method). Without a body a
		// request keeps its kind, and so does one that names its session in Mcp-Session-Id.
		{"PUT", "/messages/?session_id=9f0b", "", true, RequestLegacyPost, "9f0b"},
		{"GET", "/messages/?session_id=9f0b", "", true, RequestLegacyPost, "9f0b"},
		{"DELETE", "/message?sessionId=694d", "", true, RequestLegacyPost, "694d"},
		{"PUT", "/messages/?session_id=9f0b", "", false, RequestOther, ""},
		{"GET", "/sse?sessionid=NUVA", "", false, RequestGet, ""},
		{"GET", "/mcp", "S1", true, RequestGet, "S1"},
		{"DELETE", "/mcp", "S1", true, RequestDelete, "S1"},
		{"POST", "/message?sessionId=694d", "", false, RequestLegacyPost, "694d"},
	}
	for _, tc := range tests {
		kind, session := ClassifyRequest(tc.method, tc.path, tc.header, tc.body)
		if kind != tc.kind || session != tc.session {
			t.Errorf("ClassifyRequest(%s, %s, Mcp-Session-Id %q) = %d, %q; want %d, %q",
				tc.method, tc.path, tc.header, kind, session, tc.kind, tc.session)
		}
	}
}

func TestAmbiguousSession(t *testing.T) {
	for _, tc := range []struct {
		path, header string
		ambiguous    bool
	}{
		{"/message?sessionId=a", "", false},
		{"/mcp", "S1", false},
		{"/mcp?x=1", "S1", false},
		{"/mcp", "", false},
		{"/sse?sessionid=S1", "x", true},
		{"/message?sessionId=", "x", true},
		{"/messages/?session_id=A&session_id=B", "", true},
		{"/message?sessionId=A&session_id=B", "", true},
		{"/message?sessionId=A&sessionId=A", "", true},
		{"/messages/?session%5Fid=A&session_id=B", "", true},
		{"/messages/?session_idx=A&session_id=B", "", false},
		{"/messages/?session_id=B#session_id=A", "", false},
		// Express's qs reads these as the session parameter.
		{"/message?sessionId[]=A", "", true},
		{"/message?sessionId%5B%5D=A", "", true},
		{"/message?sessionId[0]=A", "", true},
		{"/messages/?session_id[x]=A", "", true},
		{"/mcp?sessionid[]=A", "S1", true},
		{"/mcp?sessionIds[]=A", "", false},
		{"/mcp?session[]=A", "", false},
		{"/mcp?sessionId]=A", "", false},
		{"/message?x=[&sessionId=A", "", false},
	} {
		if got := AmbiguousSession(tc.path, tc.header); (got != "") != tc.ambiguous {
			t.Errorf("AmbiguousSession(%s, Mcp-Session-Id %q) = %q, want ambiguous %v", tc.path, tc.header, got, tc.ambiguous)
		}
	}
}
