// Package accesslog reproduces Envoy's access log json_format: a dictionary whose string values
// hold command operators (%RESPONSE_CODE%, %REQ(:PATH)%, %DYNAMIC_METADATA(ns:key)%,
// %METADATA(ROUTE:ns:key)%, %COALESCE({"operators":[...]})% ...). A value
// that is exactly one operator is written typed (numbers as numbers, metadata as JSON, unavailable
// as null); a value that mixes text and operators is a string in which unavailable is "-".
package accesslog

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
)

// Info is what is known about a finished request: the input of a format.
type Info struct {
	// Start is when the request arrived (%START_TIME%).
	Start time.Time
	// Duration is the time from Start to the end of the stream (%DURATION%, in ms).
	Duration time.Duration
	Request  *headers.Map // final request headers (after filters)
	Response *headers.Map // nil when no response was sent
	// Code is the response status sent downstream (%RESPONSE_CODE%; 0 when none was sent).
	Code    int
	Flags   []string // Envoy short response flags: NR, UH, UF, UT, NC, DC, UC ...
	Details string   // %RESPONSE_CODE_DETAILS%
	// UpstreamHost is the upstream address dialled, "host:port" or a socket path
	// (%UPSTREAM_HOST%; "" = none).
	UpstreamHost string
	// UpstreamCluster is the upstream cluster's name (%UPSTREAM_CLUSTER%; "" = none).
	UpstreamCluster string
	// RouteName is the matched route's name (%ROUTE_NAME%; "" = no route or an unnamed one).
	RouteName string
	Metadata  map[string]*structpb.Struct // dynamic metadata by namespace
	// RouteMetadata is the matched route's metadata.filter_metadata (nil without a route).
	RouteMetadata map[string]*structpb.Struct
	// ClusterMetadata is the upstream cluster's metadata.filter_metadata: Envoy's
	// upstreamClusterInfo, which the connection manager sets when the route is picked, to the
	// route's (or picked weighted) cluster if that cluster exists (nil otherwise: no route, a
	// redirect or direct response, or a cluster that does not exist).
	ClusterMetadata map[string]*structpb.Struct
	// Protocol is the downstream protocol, e.g. "HTTP/1.1" (%PROTOCOL%).
	Protocol string
	// BytesReceived is the request body bytes read from downstream (%BYTES_RECEIVED%).
	BytesReceived int64
	// BytesSent is the response body bytes written downstream (%BYTES_SENT%).
	BytesSent int64
	// DownstreamRemote is the downstream remote address, "ip:port" (port 0 when it comes from
	// x-forwarded-for) (%DOWNSTREAM_REMOTE_ADDRESS%).
	DownstreamRemote string
}

// Format is a compiled json_format.
type Format struct {
	root *node
}

type node struct {
	keys     []string
	children map[string]*node
	value    *template
	literal  *structpb.Value
}

type template struct {
	parts []part
}

type part struct {
	text string
	op   *operator
}

type operator struct {
	name   string
	args   []string // REQ: alternatives; DYNAMIC_METADATA: namespace then path; METADATA: type, namespace, path
	maxLen int
	// coalesce are the operators of COALESCE, in order.
	coalesce []*operator
}

var opRE = regexp.MustCompile(`%([A-Z_]+)(\(([^)]*)\))?(:(\d+))?%`)

// implemented is the list of command operators the double writes. Envoy has many more; a format
// using another one is refused so that a log field never silently differs from Envoy's.
var implemented = map[string]bool{
	"START_TIME": true, "REQ": true, "REQUEST_HEADER": true, "RESP": true, "RESPONSE_HEADER": true,
	"RESPONSE_CODE": true, "RESPONSE_FLAGS": true, "DURATION": true, "UPSTREAM_HOST": true,
	"ROUTE_NAME": true, "DYNAMIC_METADATA": true, "PROTOCOL": true, "BYTES_RECEIVED": true,
	"BYTES_SENT": true, "RESPONSE_CODE_DETAILS": true, "UPSTREAM_CLUSTER": true,
	"DOWNSTREAM_REMOTE_ADDRESS": true, "METADATA": true, "COALESCE": true,
}

// ReqWithoutQuery is the command operator of the formatter extension
// envoy.formatter.req_without_query: %REQ_WITHOUT_QUERY(X?Y):Z% is %REQ(X?Y):Z% without the
// query string (from the first '?'), cut to Z after the query is removed (Envoy's
// ReqWithoutQuery::formatWithContext). Envoy knows it only in a format that lists the extension
// in its formatters.
const ReqWithoutQuery = "REQ_WITHOUT_QUERY"

// metadataTypes are the TYPEs of %METADATA(TYPE:NAMESPACE:KEY*)% the double implements. Envoy
// (the built-in envoy.formatter.metadata command parser) also has UPSTREAM_HOST, LISTENER and
// VIRTUAL_HOST, refused here, and refuses a type it does not know.
var metadataTypes = map[string]bool{"DYNAMIC": true, "ROUTE": true, "CLUSTER": true}

// Compile compiles a json_format dictionary. path names the field in errors; commands are the
// command operators that the format's formatter extensions add (ReqWithoutQuery).
func Compile(s *structpb.Struct, path string, commands ...string) (*Format, error) {
	c := compiler{extra: map[string]bool{}}
	for _, name := range commands {
		c.extra[name] = true
	}
	n, err := c.compileStruct(s, path)
	if err != nil {
		return nil, err
	}
	return &Format{root: n}, nil
}

// compiler compiles a format; extra are the command operators its formatters add.
type compiler struct{ extra map[string]bool }

func (cp compiler) compileStruct(s *structpb.Struct, path string) (*node, error) {
	n := &node{children: map[string]*node{}}
	for k, v := range s.GetFields() {
		p := fmt.Sprintf("%s.%s", path, k)
		var c *node
		switch v.GetKind().(type) {
		case *structpb.Value_StringValue:
			t, err := cp.compileTemplate(v.GetStringValue(), p)
			if err != nil {
				return nil, err
			}
			c = &node{value: t}
		case *structpb.Value_StructValue:
			var err error
			if c, err = cp.compileStruct(v.GetStructValue(), p); err != nil {
				return nil, err
			}
		case *structpb.Value_NumberValue, *structpb.Value_BoolValue:
			c = &node{literal: v}
		default:
			return nil, fmt.Errorf("%s: only strings, numbers, booleans and nested dictionaries are implemented by envoydouble", p)
		}
		n.keys = append(n.keys, k)
		n.children[k] = c
	}
	return n, nil
}

func (c compiler) compileTemplate(s, path string) (*template, error) {
	t := &template{}
	rest := s
	for {
		loc := opRE.FindStringSubmatchIndex(rest)
		if loc == nil {
			break
		}
		if loc[0] > 0 {
			t.parts = append(t.parts, part{text: rest[:loc[0]]})
		}
		name, arg, maxLen := rest[loc[2]:loc[3]], "", 0
		if loc[6] >= 0 {
			arg = rest[loc[6]:loc[7]]
		}
		if loc[10] >= 0 {
			maxLen, _ = strconv.Atoi(rest[loc[10]:loc[11]])
		}
		op, err := c.compileOp(name, arg, loc[6] >= 0, maxLen, path)
		if err != nil {
			return nil, err
		}
		t.parts = append(t.parts, part{op: op})
		rest = rest[loc[1]:]
	}
	if rest != "" {
		if strings.Contains(strings.ReplaceAll(rest, "%%", ""), "%") {
			return nil, fmt.Errorf("%s: malformed command operator in %q", path, s)
		}
		t.parts = append(t.parts, part{text: rest})
	}
	return t, nil
}

// compileOp compiles the command operator name with its argument arg (hasArg: it has one, in
// parentheses) and length maxLen (0: none).
func (c compiler) compileOp(name, arg string, hasArg bool, maxLen int, path string) (*operator, error) {
	if !implemented[name] && !c.extra[name] {
		return nil, fmt.Errorf("%s: command operator %%%s%% not implemented by envoydouble", path, name)
	}
	op := &operator{name: name, maxLen: maxLen}
	if hasArg {
		switch name {
		case "REQ", "REQUEST_HEADER", "RESP", "RESPONSE_HEADER", ReqWithoutQuery:
			op.args = strings.Split(strings.ToLower(arg), "?")
		case "DYNAMIC_METADATA":
			op.args = strings.Split(arg, ":")
		case "METADATA":
			op.args = strings.Split(arg, ":")
			if !metadataTypes[op.args[0]] {
				return nil, fmt.Errorf("%s: %%METADATA(%s)%%: metadata type %q not implemented by envoydouble (DYNAMIC, ROUTE, CLUSTER)", path, arg, op.args[0])
			}
		case "COALESCE":
			var err error
			if op.coalesce, err = c.compileCoalesce(arg, path); err != nil {
				return nil, err
			}
		case "START_TIME":
			if arg != "" {
				return nil, fmt.Errorf("%s: %%START_TIME(%s)%%: custom time formats not implemented by envoydouble", path, arg)
			}
		default:
			return nil, fmt.Errorf("%s: %%%s%% takes no argument", path, name)
		}
	}
	switch name {
	case "REQ", ReqWithoutQuery, "REQUEST_HEADER", "RESP", "RESPONSE_HEADER", "DYNAMIC_METADATA", "METADATA", "COALESCE":
		if len(op.args) == 0 && op.coalesce == nil {
			return nil, fmt.Errorf("%s: %%%s%% needs an argument", path, name)
		}
	}
	return op, nil
}

// compileCoalesce compiles the argument of %COALESCE(JSON)% (Envoy 1.37+, CoalesceFormatter::create):
// {"operators": [...]}, a non-empty array whose entries are a command without an argument
// ("UPSTREAM_HOST") or {"command": C, "param": P, "max_length": N} (param and max_length
// optional, max_length positive), each the command operator %C(P):N%. Only Envoy's built-in
// commands may be named (it looks them up in BuiltInCommandParserFactoryHelper::commandParsers):
// not those of the format's formatter extensions (REQ_WITHOUT_QUERY).
func (c compiler) compileCoalesce(arg, path string) ([]*operator, error) {
	path += ": %COALESCE%"
	var cfg struct {
		Operators *[]json.RawMessage `json:"operators"`
	}
	if err := json.Unmarshal([]byte(arg), &cfg); err != nil {
		return nil, fmt.Errorf("%s: failed to parse JSON configuration: %v", path, err)
	}
	switch {
	case cfg.Operators == nil:
		return nil, fmt.Errorf("%s: JSON configuration must contain 'operators' array", path)
	case len(*cfg.Operators) == 0:
		return nil, fmt.Errorf("%s: 'operators' array must not be empty", path)
	}
	builtIn := compiler{extra: map[string]bool{}}
	ops := make([]*operator, 0, len(*cfg.Operators))
	for i, raw := range *cfg.Operators {
		at := fmt.Sprintf("%s: operator at index %d", path, i)
		var command string
		if json.Unmarshal(raw, &command) == nil {
			op, err := builtIn.compileOp(command, "", false, 0, at)
			if err != nil {
				return nil, err
			}
			ops = append(ops, op)
			continue
		}
		var e struct {
			Command   *string `json:"command"`
			Param     *string `json:"param"`
			MaxLength *int    `json:"max_length"`
		}
		if err := json.Unmarshal(raw, &e); err != nil || e.Command == nil {
			return nil, fmt.Errorf("%s: must be either a string (command name) or an object with a string 'command' field", at)
		}
		maxLen := 0
		if e.MaxLength != nil {
			if *e.MaxLength <= 0 {
				return nil, fmt.Errorf("%s: 'max_length' must be a positive integer", at)
			}
			maxLen = *e.MaxLength
		}
		param := ""
		if e.Param != nil {
			param = *e.Param
		}
		op, err := builtIn.compileOp(*e.Command, param, param != "", maxLen, at)
		if err != nil {
			return nil, err
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// Render writes one JSON line (with a trailing newline) for info.
func (f *Format) Render(info *Info) []byte {
	b, err := json.Marshal(f.root.render(info))
	if err != nil {
		b = []byte(fmt.Sprintf(`{"envoydouble_error":%q}`, err.Error()))
	}
	return append(b, '\n')
}

func (n *node) render(info *Info) any {
	switch {
	case n.literal != nil:
		return n.literal.AsInterface()
	case n.value != nil:
		return n.value.render(info)
	}
	out := make(map[string]any, len(n.keys))
	for _, k := range n.keys {
		out[k] = n.children[k].render(info)
	}
	return out
}

func (t *template) render(info *Info) any {
	if len(t.parts) == 1 && t.parts[0].op != nil {
		v, ok := t.parts[0].op.value(info)
		if !ok {
			return nil
		}
		return v
	}
	var sb strings.Builder
	for _, p := range t.parts {
		if p.op == nil {
			sb.WriteString(p.text)
			continue
		}
		v, ok := p.op.value(info)
		if !ok {
			sb.WriteString("-")
			continue
		}
		switch x := v.(type) {
		case string:
			sb.WriteString(x)
		default:
			j, _ := json.Marshal(x)
			sb.Write(j)
		}
	}
	return sb.String()
}

// value evaluates the operator: (typed value, available).
func (o *operator) value(info *Info) (any, bool) {
	str := func(s string) (any, bool) {
		if o.maxLen > 0 && len(s) > o.maxLen {
			s = s[:o.maxLen]
		}
		return s, true
	}
	switch o.name {
	case "START_TIME":
		return info.Start.UTC().Format("2006-01-02T15:04:05.000Z"), true
	case "REQ", "REQUEST_HEADER":
		return header(info.Request, o.args, str)
	case ReqWithoutQuery:
		return header(info.Request, o.args, func(v string) (any, bool) {
			if i := strings.IndexByte(v, '?'); i >= 0 {
				v = v[:i]
			}
			return str(v)
		})
	case "RESP", "RESPONSE_HEADER":
		return header(info.Response, o.args, str)
	case "RESPONSE_CODE":
		return info.Code, true
	case "RESPONSE_FLAGS":
		if len(info.Flags) == 0 {
			return "-", true
		}
		return strings.Join(info.Flags, ","), true
	case "DURATION":
		return info.Duration.Milliseconds(), true
	case "UPSTREAM_HOST":
		if info.UpstreamHost == "" {
			return nil, false
		}
		return str(info.UpstreamHost)
	case "UPSTREAM_CLUSTER":
		if info.UpstreamCluster == "" {
			return nil, false
		}
		return str(info.UpstreamCluster)
	case "ROUTE_NAME":
		if info.RouteName == "" {
			return nil, false
		}
		return str(info.RouteName)
	case "PROTOCOL":
		return str(info.Protocol)
	case "BYTES_RECEIVED":
		return info.BytesReceived, true
	case "BYTES_SENT":
		return info.BytesSent, true
	case "RESPONSE_CODE_DETAILS":
		if info.Details == "" {
			return nil, false
		}
		return str(info.Details)
	case "DOWNSTREAM_REMOTE_ADDRESS":
		return str(info.DownstreamRemote)
	case "DYNAMIC_METADATA":
		return metadata(info.Metadata, o.args, o.maxLen)
	case "COALESCE":
		// Envoy's CoalesceFormatter::formatValue: the first operator's value that is neither
		// unavailable, null nor an empty string, a string cut to the length.
		for _, op := range o.coalesce {
			v, ok := op.value(info)
			if !ok || v == nil || v == "" {
				continue
			}
			if s, isStr := v.(string); isStr {
				return str(s)
			}
			return v, true
		}
		return nil, false
	case "METADATA":
		// Envoy's MetadataFormatter: the TYPE picks the metadata (DYNAMIC: the request's,
		// ROUTE: stream_info.route()'s, CLUSTER: upstreamClusterInfo()'s); then as
		// DYNAMIC_METADATA, unavailable (null, "-" in text) when there is none.
		md := map[string]map[string]*structpb.Struct{"DYNAMIC": info.Metadata, "ROUTE": info.RouteMetadata,
			"CLUSTER": info.ClusterMetadata}[o.args[0]]
		return metadata(md, o.args[1:], o.maxLen)
	}
	return nil, false
}

func header(h *headers.Map, names []string, str func(string) (any, bool)) (any, bool) {
	if h == nil {
		return nil, false
	}
	for _, n := range names {
		if v, ok := h.Get(n); ok {
			return str(v)
		}
	}
	return nil, false
}

// metadata reads %DYNAMIC_METADATA(NAMESPACE:KEY*)% (and %METADATA(TYPE:NAMESPACE:KEY*)%) in a
// metadata's filter_metadata: the namespace struct, then nested keys. Strings are truncated to
// maxLen; other values are written as JSON. A missing namespace (also an empty one, as in
// %METADATA(ROUTE)%) is unavailable.
func metadata(md map[string]*structpb.Struct, args []string, maxLen int) (any, bool) {
	if len(args) == 0 {
		return nil, false
	}
	s, ok := md[args[0]]
	if !ok {
		return nil, false
	}
	v := structpb.NewStructValue(s)
	for _, k := range args[1:] {
		sv := v.GetStructValue()
		if sv == nil {
			return nil, false
		}
		if v, ok = sv.GetFields()[k]; !ok {
			return nil, false
		}
	}
	out := v.AsInterface()
	if str, ok := out.(string); ok && maxLen > 0 && len(str) > maxLen {
		out = str[:maxLen]
	}
	return out, true
}
