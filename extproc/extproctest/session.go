package extproctest

import (
	"bytes"

	"github.com/mcpgate/mcpgate/extproc/bind"
	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// SessionKey returns the session key of the tests' ext_proc servers (extproc.Config.SessionKey).
func SessionKey() []byte { return bytes.Repeat([]byte("mcpgate-test-key"), 2) }

// LabSession returns the server's session id as the gateway gives it to a client with the lab's
// token (issuer "solo.io", subject "user-id"): sealed for that caller under SessionKey.
func LabSession(id string) string {
	return seal(id, bind.Caller{Verified: true, Issuer: "solo.io", Subject: "user-id"})
}

// AnonSession returns the server's session id as the gateway gives it to a client without a
// verified token.
func AnonSession(id string) string { return seal(id, bind.Caller{}) }

func seal(id string, c bind.Caller) string {
	b, err := bind.New(SessionKey())
	if err != nil {
		panic(err) // SessionKey has the size bind requires
	}
	return b.Seal(id, c)
}

// LabEndpoint returns a legacy SSE server's endpoint (its endpoint event's data) as the gateway
// gives it to a client with the lab's token: its session query parameter sealed (LabSession).
func LabEndpoint(endpoint string) string {
	return mcp.WithSession(endpoint, LabSession(mcp.SessionFromURL(endpoint)))
}
