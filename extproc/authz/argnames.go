package authz

import (
	"strconv"
	"strings"

	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
)

// argNames is the tree of the tool argument members that rules select by name:
// mcp.tool.arguments.a.b, mcp.tool.arguments["a"].b and "b" in mcp.tool.arguments.a give a → b,
// and mcp.tool.arguments.a[0].b gives a → any element → b. ext_proc refuses a call with a member
// that only letter case tells from one of these names (see RuleSet.ArgumentInOtherCase).
type argNames struct {
	// names are the members selected by name in an object, each with what is selected in it.
	names map[string]*argNames
	// elems is what is selected in the elements of a list (nil: nothing).
	elems *argNames
}

// argStep is one selection: a member by name, or (elem) an element of a list.
type argStep struct {
	name string
	elem bool
}

// add records the path of selections steps.
func (n *argNames) add(steps []argStep) {
	for _, s := range steps {
		if s.elem {
			if n.elems == nil {
				n.elems = &argNames{}
			}
			n = n.elems
			continue
		}
		if n.names == nil {
			n.names = map[string]*argNames{}
		}
		next := n.names[s.name]
		if next == nil {
			next = &argNames{}
			n.names[s.name] = next
		}
		n = next
	}
}

// addSelection records what e selects in the tool arguments, if anything.
func (n *argNames) addSelection(e ast.Expr) {
	if e.Kind() == ast.CallKind {
		if call := e.AsCall(); call.FunctionName() == "@in" && len(call.Args()) == 2 {
			// "b" in mcp.tool.arguments.a selects b in a.
			name, isName := stringLiteral(call.Args()[0])
			if steps, ok := argPath(call.Args()[1]); ok && isName {
				n.add(append(steps, argStep{name: name}))
			}
			return
		}
	}
	if steps, ok := argPath(e); ok {
		n.add(steps)
	}
}

// argPath returns the selections that e makes in the tool arguments, from the outermost
// member in: for mcp.tool.arguments.a["b"][0].c, a, b, any element, c. ok is false when e is
// not within them. The arguments are the innermost selection of a field named arguments (on
// mcp.tool, or on a comprehension's variable bound to it), never in jwt.
func argPath(e ast.Expr) (steps []argStep, ok bool) {
	var rev []argStep // innermost last
	root := -1        // len(rev) at the innermost arguments
walk:
	for {
		switch e.Kind() {
		case ast.SelectKind:
			sel := e.AsSelect()
			if sel.FieldName() == "arguments" {
				root = len(rev)
			}
			rev = append(rev, argStep{name: sel.FieldName()})
			e = sel.Operand()
		case ast.CallKind:
			call := e.AsCall()
			if call.FunctionName() != "_[_]" || len(call.Args()) != 2 {
				break walk
			}
			name, isName := stringLiteral(call.Args()[1])
			rev = append(rev, argStep{name: name, elem: !isName})
			e = call.Args()[0]
		case ast.IdentKind:
			if e.AsIdent() == "jwt" {
				return nil, false
			}
			break walk
		default:
			break walk
		}
	}
	if root < 0 {
		return nil, false
	}
	steps = make([]argStep, root)
	for i := range root {
		steps[i] = rev[root-1-i]
	}
	return steps, true
}

// stringLiteral returns the value of a string literal.
func stringLiteral(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// otherCase returns the path of a member of v (a decoded JSON value) that n's names select only
// when letter case is folded, as Go's encoding/json matches member names (strings.EqualFold, the
// same folding), such as "opts.Mode" or "items[1].KIND".
func (n *argNames) otherCase(v any) (string, bool) {
	switch x := v.(type) {
	case map[string]any:
		if len(n.names) == 0 {
			return "", false
		}
		for k, val := range x {
			if sub, exact := n.names[k]; exact {
				if p, found := sub.otherCase(val); found {
					if !strings.HasPrefix(p, "[") {
						p = "." + p
					}
					return k + p, true
				}
				continue
			}
			for name := range n.names {
				if strings.EqualFold(k, name) {
					return k, true
				}
			}
		}
	case []any:
		if n.elems == nil {
			return "", false
		}
		for i, el := range x {
			if p, found := n.elems.otherCase(el); found {
				if !strings.HasPrefix(p, "[") {
					p = "." + p
				}
				return "[" + strconv.Itoa(i) + "]" + p, true
			}
		}
	}
	return "", false
}

// ArgumentInOtherCase returns the path (such as "Path" or "opts.Mode") of a member of in's tool
// arguments whose name equals one the rules select (mcp.tool.arguments.path, ...["path"],
// "path" in ..., at any depth the rules select into) only when letter case is folded. A server
// that binds arguments with Go's encoding/json reads {"Path": "/etc/passwd"} as path, which the
// rules do not see: the caller refuses such a call. Names a rule reaches only by iterating (in
// comprehensions such as exists) are not known.
//
// Call it after the rules have evaluated in: when no rule decoded the arguments, their member
// names could not have changed the decision, and nothing is decoded or found.
func (rs *RuleSet) ArgumentInOtherCase(in *Input) (path string, found bool) {
	if rs == nil || rs.args == nil || !in.argsOK {
		return "", false
	}
	if in.argsErr != nil || in.args == nil {
		return "", false
	}
	return rs.args.otherCase(in.args)
}
