package translator

import (
	"fmt"
	"strings"

	"github.com/mcpgate/mcpgate/extproc/authz"
	"github.com/mcpgate/mcpgate/extproc/jwt"
)

// checker validates CEL expressions and JWKS documents with the very code ext_proc runs
// (extproc/authz and extproc/jwt), so that what the translator accepts ext_proc can enforce.
// Each distinct text is checked once per translation.
type checker struct {
	env  *authz.Env
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
	if c.env == nil && c.envE == nil {
		c.env, c.envE = authz.NewEnv(authz.Options{})
	}
	err := c.envE
	if err == nil {
		if err = c.env.Check(expr); err != nil {
			// the first line names the position and the problem; the caret lines that follow
			// do not fit one-line status messages
			msg, _, _ := strings.Cut(err.Error(), "\n")
			err = fmt.Errorf("CEL does not compile: %s", strings.TrimPrefix(msg, "ERROR: "))
		}
	}
	c.cel[expr] = err
	return err
}

// checkJWKS reports whether doc is a JSON Web Key Set with at least one usable public key.
func (c *checker) checkJWKS(doc string) error {
	if err, ok := c.jwks[doc]; ok {
		return err
	}
	_, err := jwt.ParseJWKS([]byte(doc))
	c.jwks[doc] = err
	return err
}
