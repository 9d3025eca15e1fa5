package authz

import (
	"errors"
	"fmt"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// The CEL object types of the variables. Type values are immutable.
var (
	requestType  = types.NewObjectType(requestTypeName)
	mcpType      = types.NewObjectType(mcpTypeName)
	toolType     = types.NewObjectType(toolTypeName)
	promptType   = types.NewObjectType(promptTypeName)
	resourceType = types.NewObjectType(resourceTypeName)
	sourceType   = types.NewObjectType(sourceTypeName)
	identityType = types.NewObjectType(identityTypeName)
)

// field is one field of an object type: its CEL type, whether it is set (for has()), and its
// value read from the Input.
type field struct {
	typ   *types.Type
	isSet func(in *Input) bool
	get   func(in *Input) (any, error)
}

// stringField is a string field read by get; it is set when not empty. Its value is the CEL
// string, which the adapter takes as it is (a Go string would be boxed, then converted and boxed
// again).
func stringField(get func(in *Input) string) field {
	return field{
		typ:   types.StringType,
		isSet: func(in *Input) bool { return get(in) != "" },
		get:   func(in *Input) (any, error) { return types.String(get(in)), nil },
	}
}

// certField is a field of the client certificate (source.subject...): absent, without a
// verified certificate or when the certificate has no such value, reading it is an error, as
// reading a JWT claim that is absent is, so that a DENY or REQUIRE rule on it fails closed (a
// rule that would deny one certificate's subject must not pass a request that has none);
// has(source.subject) tells.
func certField(name string, get func(in *Input) string) field {
	return field{
		typ:   types.StringType,
		isSet: func(in *Input) bool { return get(in) != "" },
		get: func(in *Input) (any, error) {
			if v := get(in); v != "" {
				return types.String(v), nil
			}
			return nil, fmt.Errorf("no such key: %s (no verified client certificate, or none with it)", name)
		},
	}
}

// itemField is mcp.tool, mcp.prompt or mcp.resource: set when the request concerns that item
// and names it; read in a request that concerns another item, it is errNotApplicable; read in one
// that concerns none (initialize, a GET stream, tools/list: only traffic rules see those), its
// fields are empty.
func itemField(it mcp.Item, typ *types.Type, v func(in *Input) any) field {
	return field{
		typ:   typ,
		isSet: func(in *Input) bool { return in.item() == it && in.name(it) != "" },
		get: func(in *Input) (any, error) {
			if cur := in.item(); cur != it && cur != mcp.NoItem {
				return nil, errNotApplicable
			}
			return v(in), nil
		},
	}
}

// schemaFields are the fields of the object types, by type name then field name.
func schemaFields() map[string]map[string]field {
	return map[string]map[string]field{
		requestTypeName: {
			"method": stringField(func(in *Input) string { return in.Method }),
			"path":   stringField(func(in *Input) string { return pathOnly(in.Path) }),
			"host":   stringField(func(in *Input) string { return requestHost(in.Host) }),
			"headers": {
				typ:   types.NewMapType(types.StringType, types.StringType),
				isSet: func(in *Input) bool { return in.Headers != nil },
				get:   func(in *Input) (any, error) { return (*headersView)(in), nil },
			},
		},
		mcpTypeName: {
			"method":   stringField(func(in *Input) string { return in.MCPMethod }),
			"tool":     itemField(mcp.Tool, toolType, func(in *Input) any { return (*view[toolKind])(in) }),
			"prompt":   itemField(mcp.Prompt, promptType, func(in *Input) any { return (*view[promptKind])(in) }),
			"resource": itemField(mcp.Resource, resourceType, func(in *Input) any { return (*view[resourceKind])(in) }),
		},
		promptTypeName: {
			"name":   stringField(func(in *Input) string { return in.PromptName }),
			"target": stringField(func(in *Input) string { return in.Target }),
		},
		resourceTypeName: {
			"name":   stringField(func(in *Input) string { return in.ResourceName }),
			"target": stringField(func(in *Input) string { return in.Target }),
		},
		toolTypeName: {
			"name":   stringField(func(in *Input) string { return in.ToolName }),
			"target": stringField(func(in *Input) string { return in.Target }),
			"arguments": {
				typ:   types.NewMapType(types.StringType, types.DynType),
				isSet: func(in *Input) bool { return len(in.ToolArguments) > 0 },
				get: func(in *Input) (any, error) {
					args, err := in.arguments()
					if err != nil {
						return nil, err
					}
					return args, nil
				},
			},
		},
		sourceTypeName: {
			"address": stringField(func(in *Input) string { return hostOnly(in.SourceAddress) }),
			// The verified client certificate (docs/design.md, Client certificates): subject
			// is agentgateway's name; Envoy names one URI and one DNS SAN only, so
			// agentgateway's subjectAltNames (every SAN) is not offered under that name.
			"subject":           certField("source.subject", func(in *Input) string { return in.Peer.Subject }),
			"uriSan":            certField("source.uriSan", func(in *Input) string { return in.Peer.URISAN }),
			"dnsSan":            certField("source.dnsSan", func(in *Input) string { return in.Peer.DNSSAN }),
			"certificateSha256": certField("source.certificateSha256", func(in *Input) string { return in.Peer.SHA256 }),
			"identity": {
				typ:   identityType,
				isSet: func(in *Input) bool { _, ok := spiffeIdentity(in.Peer.URISAN); return ok },
				get: func(in *Input) (any, error) {
					if _, ok := spiffeIdentity(in.Peer.URISAN); !ok {
						return nil, errors.New("no such key: source.identity (no verified client certificate with a SPIFFE URI SAN)")
					}
					return (*view[identityKind])(in), nil
				},
			},
		},
		identityTypeName: {
			"trustDomain":    stringField(func(in *Input) string { return in.identity().TrustDomain }),
			"namespace":      stringField(func(in *Input) string { return in.identity().Namespace }),
			"serviceAccount": stringField(func(in *Input) string { return in.identity().ServiceAccount }),
		},
	}
}

// asInput returns the Input of a view that CEL hands to a field getter.
func asInput(target any) (*Input, error) {
	switch v := target.(type) {
	case *view[requestKind]:
		return v.input(), nil
	case *view[mcpKind]:
		return v.input(), nil
	case *view[toolKind]:
		return v.input(), nil
	case *view[promptKind]:
		return v.input(), nil
	case *view[resourceKind]:
		return v.input(), nil
	case *view[sourceKind]:
		return v.input(), nil
	case *view[identityKind]:
		return v.input(), nil
	}
	return nil, fmt.Errorf("unexpected CEL object %T", target)
}

// schema is the type provider of the environment: the base provider plus the object types of
// request, mcp, its items and source, whose fields the type checker knows (so a misspelt field is
// a compile error) and whose values are read straight from the Input.
type schema struct {
	types.Provider
	fields map[string]map[string]*types.FieldType
	names  map[string][]string
}

// withSchema installs the schema on top of the environment's type provider.
func withSchema() cel.EnvOption {
	return func(env *cel.Env) (*cel.Env, error) {
		s := &schema{
			Provider: env.CELTypeProvider(),
			fields:   map[string]map[string]*types.FieldType{},
			names:    map[string][]string{},
		}
		for typeName, fields := range schemaFields() {
			s.fields[typeName] = map[string]*types.FieldType{}
			for name, f := range fields {
				s.fields[typeName][name] = &types.FieldType{
					Type: f.typ,
					IsSet: func(target any) bool {
						in, err := asInput(target)
						return err == nil && f.isSet(in)
					},
					GetFrom: func(target any) (any, error) {
						in, err := asInput(target)
						if err != nil {
							return nil, err
						}
						return f.get(in)
					},
				}
				s.names[typeName] = append(s.names[typeName], name)
			}
		}
		return cel.CustomTypeProvider(s)(env)
	}
}

// FindStructType implements types.Provider.
func (s *schema) FindStructType(name string) (*types.Type, bool) {
	if _, ok := s.fields[name]; ok {
		return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
	}
	return s.Provider.FindStructType(name)
}

// FindIdent implements types.Provider: the object type names are type values.
func (s *schema) FindIdent(name string) (ref.Val, bool) {
	if _, ok := s.fields[name]; ok {
		return types.NewObjectType(name), true
	}
	return s.Provider.FindIdent(name)
}

// FindStructFieldNames implements types.Provider.
func (s *schema) FindStructFieldNames(name string) ([]string, bool) {
	if names, ok := s.names[name]; ok {
		return names, true
	}
	return s.Provider.FindStructFieldNames(name)
}

// FindStructFieldType implements types.Provider.
func (s *schema) FindStructFieldType(name, fieldName string) (*types.FieldType, bool) {
	if fields, ok := s.fields[name]; ok {
		f, ok := fields[fieldName]
		return f, ok
	}
	return s.Provider.FindStructFieldType(name, fieldName)
}

// NewValue implements types.Provider: the object types cannot be constructed in an expression.
func (s *schema) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := s.fields[name]; ok {
		return types.NewErr("%s cannot be constructed", name)
	}
	return s.Provider.NewValue(name, fields)
}
