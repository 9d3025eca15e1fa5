package contract

import (
	"testing"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

func TestPolicyTypeURLNamesTheProto(t *testing.T) {
	want := "type.googleapis.com/" + string((&policyv1.Policy{}).ProtoReflect().Descriptor().FullName())
	if PolicyTypeURL != want {
		t.Fatalf("PolicyTypeURL = %q, the proto's is %q", PolicyTypeURL, want)
	}
}
