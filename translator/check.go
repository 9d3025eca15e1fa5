package translator

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/cel-go/cel"
)

// checker validates CEL expressions and JWKS documents, each distinct text once per translation.
// The CEL environment declares the variables ext_proc provides (jwt, request, mcp, source) as
// maps of dyn, so an expression compiles here exactly when ext_proc can compile it.
type checker struct {
	env  *cel.Env
	envE error
	cel  map[string]error
	jwks map[string]error
}

func newChecker() *checker {
	return &checker{cel: map[string]error{}, jwks: map[string]error{}}
}

// checkCEL reports whether expr compiles to a bool (or dyn) expression.
func (c *checker) checkCEL(expr string) error {
	if err, ok := c.cel[expr]; ok {
		return err
	}
	err := c.compileCEL(expr)
	c.cel[expr] = err
	return err
}

func (c *checker) compileCEL(expr string) error {
	if c.env == nil && c.envE == nil {
		dynMap := cel.MapType(cel.StringType, cel.DynType)
		c.env, c.envE = cel.NewEnv(
			cel.Variable("jwt", dynMap),
			cel.Variable("request", dynMap),
			cel.Variable("mcp", dynMap),
			cel.Variable("source", dynMap),
		)
	}
	if c.envE != nil {
		return fmt.Errorf("CEL environment: %w", c.envE)
	}
	ast, iss := c.env.Compile(expr)
	if iss.Err() != nil {
		// the first line names the position and the problem; the caret lines that follow
		// do not fit one-line status messages
		msg, _, _ := strings.Cut(iss.Err().Error(), "\n")
		return fmt.Errorf("CEL does not compile: %s", strings.TrimPrefix(msg, "ERROR: "))
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return fmt.Errorf("CEL expression gives %s, want bool", t)
	}
	return nil
}

// checkJWKS reports whether doc is a JSON Web Key Set with at least one usable key.
func (c *checker) checkJWKS(doc string) error {
	if err, ok := c.jwks[doc]; ok {
		return err
	}
	err := parseJWKS([]byte(doc))
	c.jwks[doc] = err
	return err
}

func parseJWKS(doc []byte) error {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(doc, &set); err != nil {
		return fmt.Errorf("JWKS does not parse: %w", err)
	}
	if len(set.Keys) == 0 {
		return errors.New("JWKS has no keys")
	}
	for i, k := range set.Keys {
		if !k.Valid() {
			return fmt.Errorf("JWKS key %d (kid %q) is not valid", i, k.KeyID)
		}
		if !k.IsPublic() {
			return fmt.Errorf("JWKS key %d (kid %q) is a private or symmetric key; a JWKS here must hold public keys only", i, k.KeyID)
		}
	}
	return nil
}
