package translator

import "testing"

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
