package translator_test

import (
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/translator"
)

// TestValidateClientCertificateSecret: Validate refuses a Gateway whose TLS clusters present a
// client certificate over SDS that its Secrets do not hold (Envoy's cluster would wait for it,
// then fail its connections).
func TestValidateClientCertificateSecret(t *testing.T) {
	in := "testdata/backend-client-cert.in.yaml"
	out := translator.Translate(loadInputs(t, in), readOptions(t, in))
	g := out.Gateways["default/gw"]
	if err := g.Validate(); err != nil {
		t.Fatalf("%s: gateway default/gw does not validate: %v", in, err)
	}
	if len(g.Secrets) != 1 {
		t.Fatalf("%s: gateway default/gw: %d Secrets, want the client certificate's", in, len(g.Secrets))
	}
	g.Secrets = nil
	err := g.Validate()
	want := `cluster agentgatewaybackend/default/remote/remote transport socket: Secret "secret/default/client-cert" is missing`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Validate() without the Secret = %v, want an error containing %q", err, want)
	}
}
