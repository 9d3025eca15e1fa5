package translator_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/mcpgate/mcpgate/translator"
)

// TestRateLimitKeepsListeners: adding rate limits changes route configurations only, never a
// Listener (a changed Listener is drained by Envoy, ending its open SSE streams): the listeners
// of testdata/rate-limit.in.yaml are the same with and without its policies.
func TestRateLimitKeepsListeners(t *testing.T) {
	limited := loadInputs(t, "testdata/rate-limit.in.yaml")
	plain := *limited
	plain.Policies = nil
	a := translator.Translate(limited, translator.Options{})
	b := translator.Translate(&plain, translator.Options{})
	if len(a.Gateways) == 0 {
		t.Fatal("no Gateway translated")
	}
	for key, gw := range a.Gateways {
		other := b.Gateways[key]
		if other == nil || len(other.Listeners) != len(gw.Listeners) {
			t.Fatalf("Gateway %s: listeners differ in number without the policies", key)
		}
		for i, l := range gw.Listeners {
			if !proto.Equal(l, other.Listeners[i]) {
				t.Errorf("Gateway %s: listener %s changes when rate limits are added", key, l.GetName())
			}
		}
	}
}
