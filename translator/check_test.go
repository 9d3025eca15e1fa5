package translator

import (
	"fmt"
	"testing"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
)

// TestCacheForgets: a Cache gives the remembered result, keeps what the last translation used,
// and forgets the rest.
func TestCacheForgets(t *testing.T) {
	c := NewCache()
	if err := c.checkCEL("jwt.sub =="); err == nil {
		t.Fatal("a broken expression compiles")
	}
	if err := c.checkCEL("true"); err != nil {
		t.Fatal(err)
	}
	c.done() // translation 1 used both
	if err := c.checkCEL("jwt.sub =="); err == nil {
		t.Fatal("the remembered result of a broken expression is nil")
	}
	c.done() // translation 2 used the broken one only
	if _, ok := c.prevCEL["true"]; ok {
		t.Fatal(`"true" is remembered although the last translation did not use it`)
	}
	if _, ok := c.prevCEL["jwt.sub =="]; !ok {
		t.Fatal("the expression the last translation used is forgotten")
	}
	c.done() // translation 3 used nothing
	if len(c.prevCEL)+len(c.cel) != 0 {
		t.Fatalf("remembered %v %v after a translation without them", c.prevCEL, c.cel)
	}
}

// TestPrecheck: precheck checks every CEL expression and inline JWKS of the policies (traffic
// and MCP rules, each provider) with the results the policy pass would get, skips what the Cache
// already holds, and keeps only what is used: a later translation that does not use a result
// forgets it as before.
func TestPrecheck(t *testing.T) {
	jwks, badJWKS := `{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`, `{"keys":[]}`
	var pols []*v1alpha1.AgentgatewayPolicy
	for i, expr := range []string{"true", "jwt.sub ==", "mcp.tool.name == 'x'"} {
		pols = append(pols, &v1alpha1.AgentgatewayPolicy{Spec: v1alpha1.AgentgatewayPolicySpec{
			Traffic: &v1alpha1.TrafficPolicy{
				Authorization: &v1alpha1.Authorization{Policy: v1alpha1.AuthorizationPolicy{MatchExpressions: []v1alpha1.CELExpression{v1alpha1.CELExpression(expr)}}},
				JWTAuthentication: &v1alpha1.JWTAuthentication{Providers: []v1alpha1.JWTProvider{
					{JWKS: v1alpha1.JWKS{Inline: &jwks}}, {JWKS: v1alpha1.JWKS{Inline: &badJWKS}}}},
			},
			Backend: &v1alpha1.BackendPolicy{MCP: &v1alpha1.BackendMCP{Authorization: &v1alpha1.Authorization{
				Policy: v1alpha1.AuthorizationPolicy{MatchExpressions: []v1alpha1.CELExpression{v1alpha1.CELExpression(fmt.Sprintf("mcp.tool.name == 't%d'", i))}}}}},
		}})
	}
	pols = append(pols, nil, &v1alpha1.AgentgatewayPolicy{}) // nothing to check in these
	c := NewCache()
	c.precheck(pols)()
	wantErr := map[string]bool{"true": false, "jwt.sub ==": true, "mcp.tool.name == 'x'": false, "mcp.tool.name == 't0'": false, "mcp.tool.name == 't1'": false, "mcp.tool.name == 't2'": false}
	if len(c.cel) != len(wantErr) {
		t.Fatalf("checked CEL %v, want %v", c.cel, wantErr)
	}
	for expr, bad := range wantErr {
		if err, ok := c.cel[expr]; !ok || (err != nil) != bad {
			t.Errorf("CEL %q: checked %t, error %v", expr, ok, err)
		}
	}
	if err, ok := c.jwks[jwks]; !ok || err != nil {
		t.Errorf("JWKS: checked %t, error %v", ok, err)
	}
	if err, ok := c.jwks[badJWKS]; !ok || err == nil {
		t.Errorf("JWKS without keys: checked %t, error %v", ok, err)
	}
	c.done()
	// the next translation's precheck finds everything remembered: nothing to wait for
	c.precheck(pols)()
	if len(c.cel) != 0 || len(c.jwks) != 0 {
		t.Errorf("prechecked again what the Cache held: %v %v", c.cel, c.jwks)
	}
}
