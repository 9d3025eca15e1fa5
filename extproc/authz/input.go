package authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"

	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// Input is one request as the rules see it. ext_proc fills it from what Envoy sends; nothing is
// converted for CEL unless a rule reads it (Input is its own CEL activation). An Input may be
// reused for the next evaluation after changing fields (e.g. ToolName for each tool of a
// tools/list answer); call Reset between requests. An Input is not safe for concurrent use: it
// caches its decoded tool arguments.
type Input struct {
	// Claims are the verified JWT claims; nil when there is no valid token (then `jwt.X` fails
	// at run time and the rule counts as not matching).
	Claims map[string]any
	// Method, Path and Host are :method, :path (request.path drops the query) and :authority
	// (request.host is it as Envoy matches virtual hosts: see requestHost).
	Method, Path, Host string
	// Headers are the request headers; nil means none.
	Headers Headers
	// MCPMethod is the JSON-RPC method of an MCP request ("tools/call", "tools/list"...). It
	// says which MCP item the request concerns, if any (see ItemOf): the one of mcp.tool,
	// mcp.prompt and mcp.resource that applies.
	MCPMethod string
	// Item is the MCP item the request concerns when its method does not say which: a
	// completion/complete's, the prompt or resource its ref names. NoItem: the method's (ItemOf).
	Item mcp.Item
	// Target names the MCP target that serves the request (the route's).
	Target string
	// ToolName is the tool a tools/call calls (unprefixed).
	ToolName string
	// PromptName is the prompt a prompts/get gets.
	PromptName string
	// ResourceName is the URI of the resource a resources/read, resources/subscribe or
	// resources/unsubscribe names (or, when filtering resources/templates/list, a URI template).
	ResourceName string
	// ToolArguments is the raw JSON of params.arguments of a tools/call; it is decoded on the
	// first read by a rule, once per Input.
	ToolArguments json.RawMessage
	// SourceAddress is the downstream address as Envoy reports it ("ip:port" or "ip");
	// source.address is its IP part.
	SourceAddress string
	// Peer is the client certificate Envoy verified on the connection; zero without one.
	Peer PeerCertificate

	args    map[string]any // ToolArguments decoded
	argsErr error
	argsOK  bool // args/argsErr are set
}

// PeerCertificate is a client certificate as Envoy describes it in the ext_proc request
// attributes of a filter chain that verifies client certificates (contract.PeerCertificateAttributes):
// only there does ext_proc fill it, so a certificate here is one Envoy verified.
type PeerCertificate struct {
	// Subject is the subject in RFC 2253 form ("CN=client,O=example"); URISAN and DNSSAN are
	// the first URI and the first DNS SAN (Envoy's attributes name no other); SHA256 is the
	// lower-case hex digest of the DER certificate. Empty: absent.
	Subject, URISAN, DNSSAN, SHA256 string
}

// Reset clears the Input for another request, keeping nothing of the last one.
func (in *Input) Reset() { *in = Input{} }

// Headers gives rules read access to request headers; names are lower case.
type Headers interface {
	// Get returns the value of the header name (lower case); a repeated header is joined with ",".
	Get(name string) (value string, ok bool)
	// Range calls f for each header until f returns false.
	Range(f func(name, value string) bool)
	// Len returns the number of distinct header names.
	Len() int
}

// arguments returns ToolArguments decoded, decoding them once.
func (in *Input) arguments() (map[string]any, error) {
	if !in.argsOK {
		in.argsOK = true
		if len(in.ToolArguments) > 0 {
			var m map[string]any
			if err := json.Unmarshal(in.ToolArguments, &m); err != nil {
				in.argsErr = fmt.Errorf("mcp.tool.arguments: not a JSON object: %w", err)
			} else {
				in.args = m
			}
		}
	}
	return in.args, in.argsErr
}

// ResolveName implements interpreter.Activation: it hands CEL the views of the variables, which
// convert a field only when a rule reads it.
func (in *Input) ResolveName(name string) (any, bool) {
	switch name {
	case "jwt":
		return in.Claims, true
	case "request":
		return (*view[requestKind])(in), true
	case "mcp":
		return (*view[mcpKind])(in), true
	case "source":
		return (*view[sourceKind])(in), true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (in *Input) Parent() interpreter.Activation { return nil }

// listingInput is an Input as EvaluateListing shows it to the rules' partial-evaluation
// programs: the same pointer under another type (no allocation), a partial activation in which
// mcp.tool.arguments is unknown.
type listingInput Input

// unknownWhenListing are the attribute patterns of listingInput: mcp.tool.arguments and what
// holds it (mcp.tool, mcp used whole, e.g. bound to a comprehension variable). Never modified.
var unknownWhenListing = []*interpreter.AttributePattern{
	interpreter.NewAttributePattern("mcp").QualString("tool").QualString("arguments"),
}

// ResolveName implements interpreter.Activation.
func (l *listingInput) ResolveName(name string) (any, bool) { return (*Input)(l).ResolveName(name) }

// Parent implements interpreter.Activation.
func (l *listingInput) Parent() interpreter.Activation { return nil }

// UnknownAttributePatterns implements interpreter.PartialActivation.
func (l *listingInput) UnknownAttributePatterns() []*interpreter.AttributePattern {
	return unknownWhenListing
}

// AsPartialActivation is how cel-go finds the unknown patterns of an activation.
func (l *listingInput) AsPartialActivation() (interpreter.PartialActivation, bool) { return l, true }

// The CEL object types of the variables request, mcp, mcp.tool, mcp.prompt, mcp.resource and
// source. They exist only in
// this package's type provider (see schema).
const (
	requestTypeName  = "mcpgate.Request"
	mcpTypeName      = "mcpgate.MCP"
	toolTypeName     = "mcpgate.Tool"
	promptTypeName   = "mcpgate.Prompt"
	resourceTypeName = "mcpgate.Resource"
	sourceTypeName   = "mcpgate.Source"
	identityTypeName = "mcpgate.Identity"
)

// The values of request, mcp, its items and source are views of an Input: the same pointer under
// another type, so handing one to CEL allocates nothing. A view is a ref.Val whose Value is
// itself, which is what CEL's field qualifiers pass to the schema's getters (see schema.go).
type view[K kind] Input

// kind names the CEL object type of a view.
type kind interface{ celType() *types.Type }

type (
	requestKind  struct{}
	mcpKind      struct{}
	toolKind     struct{}
	promptKind   struct{}
	resourceKind struct{}
	sourceKind   struct{}
	identityKind struct{}
)

func (requestKind) celType() *types.Type  { return requestType }
func (mcpKind) celType() *types.Type      { return mcpType }
func (toolKind) celType() *types.Type     { return toolType }
func (promptKind) celType() *types.Type   { return promptType }
func (resourceKind) celType() *types.Type { return resourceType }
func (sourceKind) celType() *types.Type   { return sourceType }
func (identityKind) celType() *types.Type { return identityType }

// input returns the Input a view shows.
func (v *view[K]) input() *Input { return (*Input)(v) }

// ConvertToNative implements ref.Val; views have no Go form outside this package.
func (v *view[K]) ConvertToNative(reflect.Type) (any, error) {
	var k K
	return nil, fmt.Errorf("%s cannot be converted to a Go value", k.celType().TypeName())
}

// ConvertToType implements ref.Val: only type(x) works.
func (v *view[K]) ConvertToType(t ref.Type) ref.Val {
	var k K
	if t == types.TypeType {
		return k.celType()
	}
	return types.NewErr("type conversion error from %s to %s", k.celType().TypeName(), t.TypeName())
}

// Equal implements ref.Val: a view equals only itself.
func (v *view[K]) Equal(o ref.Val) ref.Val {
	other, ok := o.(*view[K])
	return types.Bool(ok && other == v)
}

// Type implements ref.Val.
func (v *view[K]) Type() ref.Type {
	var k K
	return k.celType()
}

// Value implements ref.Val.
func (v *view[K]) Value() any { return v }

// pathOnly returns a :path without its query.
func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

// requestHost returns an :authority as Envoy matches it to a virtual host: without a port (the
// route configurations set ignore_port_in_host_matching; the port is what follows the last ':'
// outside an IPv6 literal's brackets), in ASCII lower case, plus without one trailing dot. A rule
// on request.host then holds for every spelling of the host that reaches the route.
func requestHost(authority string) string {
	h := authority
	if i := strings.LastIndexByte(h, ':'); i >= 0 && i > strings.LastIndexByte(h, ']') {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if 'A' <= h[i] && h[i] <= 'Z' {
			return asciiLower(h)
		}
	}
	return h
}

// asciiLower returns s with ASCII letters in lower case, others unchanged (strings.ToLower would
// also fold other letters, which Envoy does not).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// hostOnly returns the IP of "ip:port", "[v6]:port" or "ip".
func hostOnly(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// headersView is request.headers: a CEL map(string, string) over Input.Headers, read on demand
// (another view of the Input, so it allocates nothing). Keys are matched in lower case.
type headersView Input

// headers returns the Headers the view shows; nil when there are none.
func (m *headersView) headers() Headers { return m.Headers }

// ConvertToNative implements ref.Val.
func (m *headersView) ConvertToNative(reflect.Type) (any, error) {
	return nil, errors.New("request.headers cannot be converted to a Go value")
}

// ConvertToType implements ref.Val: only type(x) works.
func (m *headersView) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return types.MapType
	}
	return types.NewErr("type conversion error from map to %s", t.TypeName())
}

// Equal implements ref.Val: request.headers equals only itself.
func (m *headersView) Equal(o ref.Val) ref.Val {
	other, ok := o.(*headersView)
	return types.Bool(ok && other == m)
}

// Type implements ref.Val.
func (m *headersView) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (m *headersView) Value() any { return m }

// Find implements traits.Mapper.
func (m *headersView) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), false
	}
	h := m.headers()
	if h == nil {
		return nil, false
	}
	name := string(k)
	if strings.ContainsFunc(name, func(r rune) bool { return 'A' <= r && r <= 'Z' }) {
		name = strings.ToLower(name)
	}
	v, found := h.Get(name)
	if !found {
		return nil, false
	}
	return types.String(v), true
}

// Get implements traits.Indexer.
func (m *headersView) Get(key ref.Val) ref.Val {
	v, found := m.Find(key)
	switch {
	case found, v != nil:
		return v
	}
	return types.NewErr("no such key: %v", key)
}

// Contains implements traits.Container.
func (m *headersView) Contains(key ref.Val) ref.Val {
	v, found := m.Find(key)
	if !found && v != nil {
		return v
	}
	return types.Bool(found)
}

// Size implements traits.Sizer.
func (m *headersView) Size() ref.Val {
	if h := m.headers(); h != nil {
		return types.Int(h.Len())
	}
	return types.IntZero
}

// Iterator implements traits.Iterable over the header names.
func (m *headersView) Iterator() traits.Iterator {
	var names []ref.Val
	if h := m.headers(); h != nil {
		h.Range(func(name, _ string) bool {
			names = append(names, types.String(name))
			return true
		})
	}
	return types.NewRefValList(types.DefaultTypeAdapter, names).Iterator()
}

// Compile-time checks of the interfaces CEL relies on.
var (
	_ traits.Mapper                 = (*headersView)(nil)
	_ ref.Val                       = (*view[requestKind])(nil)
	_ interpreter.Activation        = (*Input)(nil)
	_ interpreter.PartialActivation = (*listingInput)(nil)
)
