package mcp

import "testing"

func TestClassifyRequest(t *testing.T) {
	tests := []struct {
		method, path, header string
		kind                 RequestKind
		session              string
	}{
		// Legacy message POSTs of the TypeScript, Go and Python SDKs.
		{"POST", "/message?sessionId=694d", "", RequestLegacyPost, "694d"},
		{"POST", "/sse?sessionid=NUVA", "", RequestLegacyPost, "NUVA"},
		{"POST", "/messages/?session_id=9f0b", "", RequestLegacyPost, "9f0b"},
		// Streamable HTTP POSTs: initialize (no session yet) and the ones after it, whatever
		// the query says.
		{"POST", "/mcp", "", RequestPost, ""},
		{"POST", "/mcp", "S1", RequestPost, "S1"},
		{"POST", "/mcp?sessionId=x", "S1", RequestPost, "S1"},
		{"POST", "/message?sessionId=", "", RequestPost, ""},
		{"GET", "/sse", "", RequestGet, ""},
		{"GET", "/mcp", "S1", RequestGet, "S1"},
		{"DELETE", "/mcp", "S1", RequestDelete, "S1"},
		{"OPTIONS", "/mcp", "", RequestOther, ""},
	}
	for _, tc := range tests {
		kind, session := ClassifyRequest(tc.method, tc.path, tc.header)
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
	} {
		if got := AmbiguousSession(tc.path, tc.header); (got != "") != tc.ambiguous {
			t.Errorf("AmbiguousSession(%s, Mcp-Session-Id %q) = %q, want ambiguous %v", tc.path, tc.header, got, tc.ambiguous)
		}
	}
}
