package translator

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/extproc/authz"
	"github.com/mcpgate/mcpgate/extproc/jwt"
)

// Cache remembers, from one translation to the next, the checks whose result depends only on a
// text: whether a CEL expression compiles and whether a JWKS document parses (with the very
// code ext_proc runs, extproc/authz and extproc/jwt, so that what the translator accepts
// ext_proc can enforce). A caller that translates again and again (the file watcher, the
// controller) sets the same Cache in every Options, so that the policies that did not change
// are not checked again; the output is the same with or without it. A Cache keeps the results
// that the last translation used and forgets the others. It is safe for concurrent use.
type Cache struct {
	mu       sync.Mutex
	env      *authz.Env
	envErr   error
	cel      map[string]error // used by the current translation
	jwks     map[string]error
	prevCEL  map[string]error // used by the translation before
	prevJWKS map[string]error
}

// NewCache returns an empty Cache.
func NewCache() *Cache {
	return &Cache{cel: map[string]error{}, jwks: map[string]error{}}
}

// lookup returns the result for text from cur or prev (moving it to cur), and whether there is
// one. The caller holds c.mu.
func lookup(cur, prev map[string]error, text string) (error, bool) {
	if err, ok := cur[text]; ok {
		return err, true
	}
	if err, ok := prev[text]; ok {
		cur[text] = err
		return err, true
	}
	return nil, false
}

// checkCEL reports whether expr compiles to a bool (or dyn) expression.
func (c *Cache) checkCEL(expr string) error {
	c.mu.Lock()
	if err, ok := lookup(c.cel, c.prevCEL, expr); ok {
		c.mu.Unlock()
		return err
	}
	if c.env == nil && c.envErr == nil {
		c.env, c.envErr = authz.NewEnv(authz.Options{})
	}
	env, err := c.env, c.envErr
	c.mu.Unlock()
	if err == nil {
		if err = env.Check(expr); err != nil {
			// the first line names the position and the problem; the caret lines that follow
			// do not fit one-line status messages
			msg, _, _ := strings.Cut(err.Error(), "\n")
			err = fmt.Errorf("CEL does not compile: %s", celProblem(expr, strings.TrimPrefix(msg, "ERROR: ")))
		}
	}
	c.mu.Lock()
	c.cel[expr] = err
	c.mu.Unlock()
	return err
}

// celProblem says what is wrong with expr, quoting it (its first 80 characters) so that a message
// read far from the file shows the expression: `"jwt.org ==" at 1:12: Syntax error: ...`. msg is
// cel-go's first line, whose "<input>:LINE:COLUMN: " becomes " at LINE:COLUMN: ".
func celProblem(expr, msg string) string {
	quoted := expr
	if r := []rune(expr); len(r) > 80 {
		quoted = string(r[:80]) + "..."
	}
	quoted = strconv.Quote(quoted)
	if rest, ok := strings.CutPrefix(msg, "<input>:"); ok {
		if pos, detail, ok := strings.Cut(rest, ": "); ok {
			return quoted + " at " + pos + ": " + detail
		}
	}
	return quoted + ": " + msg
}

// checkJWKS reports whether doc is a JSON Web Key Set with at least one usable public key.
func (c *Cache) checkJWKS(doc string) error {
	c.mu.Lock()
	err, ok := lookup(c.jwks, c.prevJWKS, doc)
	c.mu.Unlock()
	if ok {
		return err
	}
	_, err = jwt.ParseJWKS([]byte(doc))
	c.mu.Lock()
	c.jwks[doc] = err
	c.mu.Unlock()
	return err
}

// precheck starts checking, on every CPU, the CEL expressions and inline JWKS documents of
// policies that the Cache has no result for, and returns a function that waits until all are
// checked. Compiling CEL and parsing keys is most of the cost of a first translation with many
// distinct policies; the policy pass then finds the results here, in its own order, so the
// output does not depend on which check finished first.
func (c *Cache) precheck(policies []*v1alpha1.AgentgatewayPolicy) (wait func()) {
	type check struct {
		text string
		run  func(string) error
	}
	var todo []check
	queuedCEL, queuedJWKS := map[string]bool{}, map[string]bool{}
	checkCEL, checkJWKS := c.checkCEL, c.checkJWKS // one func value each, not one per text
	c.mu.Lock()
	add := func(text string, cur, prev map[string]error, queued map[string]bool, run func(string) error) {
		_, done := cur[text]
		_, remembered := prev[text]
		if done || remembered || queued[text] {
			return
		}
		queued[text] = true
		todo = append(todo, check{text, run})
	}
	addRules := func(a *v1alpha1.Authorization) {
		if a == nil {
			return
		}
		for _, e := range a.Policy.MatchExpressions {
			add(string(e), c.cel, c.prevCEL, queuedCEL, checkCEL)
		}
	}
	for _, p := range policies {
		if p == nil {
			continue
		}
		if tr := p.Spec.Traffic; tr != nil {
			addRules(tr.Authorization)
			if j := tr.JWTAuthentication; j != nil {
				for _, pr := range j.Providers {
					if pr.JWKS.Inline != nil {
						add(*pr.JWKS.Inline, c.jwks, c.prevJWKS, queuedJWKS, checkJWKS)
					}
				}
			}
		}
		if b := p.Spec.Backend; b != nil && b.MCP != nil {
			addRules(b.MCP.Authorization)
		}
	}
	c.mu.Unlock()
	if len(todo) == 0 {
		return func() {}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		forEach(len(todo), func(i int) { _ = todo[i].run(todo[i].text) }) // the result is kept in the Cache
	})
	return wg.Wait
}

// done ends a translation: what it did not use is forgotten.
func (c *Cache) done() {
	c.mu.Lock()
	c.prevCEL, c.cel = c.cel, make(map[string]error, len(c.cel))
	c.prevJWKS, c.jwks = c.jwks, make(map[string]error, len(c.jwks))
	c.mu.Unlock()
}
