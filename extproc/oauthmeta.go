package extproc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/telemetry"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// wellKnownPRM is the well-known path of OAuth 2.0 Protected Resource Metadata (RFC 9728 §3).
const wellKnownPRM = "/.well-known/oauth-protected-resource"

// resourceMetadata serves the Protected Resource Metadata of a policy's routes (the policy's
// jwt.mcp): MCP clients read the authorization server from it (MCP authorization).
type resourceMetadata struct {
	// tail is the metadata's members after resource, sorted, closing the object:
	// `,"authorization_servers":[...],"bearer_methods_supported":["header"],...}`.
	tail []byte
}

// compileResourceMetadata builds a policy's metadata; nil for none.
func compileResourceMetadata(m *policyv1.MCPResourceMetadata) (*resourceMetadata, error) {
	if m == nil {
		return nil, nil
	}
	if len(m.GetAuthorizationServers()) == 0 {
		return nil, errors.New("jwt.mcp: no authorization_servers")
	}
	members := map[string]json.RawMessage{"bearer_methods_supported": json.RawMessage(`["header"]`)}
	if extra := m.GetExtraJson(); extra != "" {
		if err := json.Unmarshal([]byte(extra), &members); err != nil {
			return nil, fmt.Errorf("jwt.mcp.extra_json: %w", err)
		}
		for _, k := range []string{"resource", "authorization_servers"} {
			if _, ok := members[k]; ok {
				return nil, fmt.Errorf("jwt.mcp.extra_json: %s is set by ext_proc", k)
			}
		}
	}
	as, err := json.Marshal(m.GetAuthorizationServers())
	if err != nil {
		return nil, err
	}
	members["authorization_servers"] = as
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(members); err != nil { // sorted keys
		return nil, fmt.Errorf("jwt.mcp: %w", err)
	}
	obj := bytes.TrimSpace(buf.Bytes())
	return &resourceMetadata{tail: append([]byte{','}, obj[1:]...)}, nil
}

// wellKnownSuffix returns the path after the well-known prefix of a Protected Resource Metadata
// request ("" for the bare one, "/mcp" for /.well-known/oauth-protected-resource/mcp); ok false
// for another path. The query is not part of it.
func wellKnownSuffix(path string) (suffix string, ok bool) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	rest, ok := strings.CutPrefix(path, wellKnownPRM)
	if !ok || (rest != "" && rest[0] != '/') {
		return "", false
	}
	return rest, true
}

// origin is the request's scheme://authority: the scheme Envoy gives (:scheme; never the
// client's X-Forwarded-Proto, which an edge Envoy does not trust), the authority the client
// named. ok is false when the authority is missing or holds what no authority holds ('/', '?',
// '#', '@', quotes, spaces, controls): no URL is made from it.
func (st *stream) origin() (string, bool) {
	host := st.in.Host
	if host == "" {
		return "", false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:[]%", c) >= 0:
		default:
			return "", false
		}
	}
	scheme := "http"
	if strings.EqualFold(st.headers.first(":scheme"), "https") {
		scheme = "https"
	}
	return scheme + "://" + host, true
}

// serveResourceMetadata answers a GET of the well-known metadata URL whose path after the
// prefix is suffix: the resource is the URL it describes (RFC 9728 §3.1: the well-known URL of
// https://h/mcp is https://h/.well-known/oauth-protected-resource/mcp, that of https://h the bare
// one). ok is false when the request names no usable authority.
func (st *stream) serveResourceMetadata(suffix string) (resp answer, ok bool) {
	origin, ok := st.origin()
	if !ok {
		return answer{}, false
	}
	resource, _ := json.Marshal(origin + suffix)
	tail := st.pol.oauth.tail
	body := make([]byte, 0, len(`{"resource":`)+len(resource)+len(tail))
	body = append(append(append(body, `{"resource":`...), resource...), tail...)
	return answer{status: http.StatusOK, contentType: "application/json", body: body,
		details: "mcpgate_oauth_protected_resource_metadata"}, true
}

// metadataAnswer answers the request with its Protected Resource Metadata, before
// authentication: the metadata is public.
func (st *stream) metadataAnswer(a answer) *extprocv3.ProcessingResponse {
	md := metadata{fields: st.mdFields[:0]}
	st.ri.muxMetadata(&md, "")
	md.str(contract.FieldAuthn, st.authn)
	md.str(contract.FieldDecision, telemetry.DecisionAllow)
	return immediateReply(a, md)
}

// resourceMetadataParam returns the challenge parameter naming the metadata of the request's
// resource, `resource_metadata="URL"` (RFC 9728 §5.1), "" when the request names no usable
// authority or its path holds control characters. The resource is the request's URL without its
// query; the well-known URL drops a path of "/" (RFC 9728 §3.1).
func (st *stream) resourceMetadataParam() string {
	origin, ok := st.origin()
	if !ok {
		return ""
	}
	path := st.in.Path
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if path == "/" {
		path = ""
	}
	u := origin + wellKnownPRM + path
	var b strings.Builder
	b.Grow(len(`resource_metadata=""`) + len(u) + 4)
	b.WriteString(`resource_metadata="`)
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return ""
		case c == '"' || c == '\\':
			b.WriteByte('\\') // quoted-pair (RFC 9110 §5.6.4)
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

// withResourceMetadata adds the resource_metadata parameter to the WWW-Authenticate challenge
// among hs.
func (st *stream) withResourceMetadata(hs []header) []header {
	param := st.resourceMetadataParam()
	if param == "" {
		return hs
	}
	for i := range hs {
		if hs[i].name == "www-authenticate" {
			hs[i].value += ", " + param
		}
	}
	return hs
}
