// Package crds_test checks the CustomResourceDefinitions that `make generate` writes here.
package crds_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/jsonpath"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/api/v1alpha1/enterprise"
)

// cell evaluates a printer column on obj as the API server's table convertor does for `kubectl
// get` (k8s.io/apiextensions-apiserver/pkg/registry/customresource/tableconvertor): the path in
// braces, missing keys allowed, the first result printed; "" when there is none.
func cell(t *testing.T, col apiextensionsv1.CustomResourceColumnDefinition, obj any) string {
	t.Helper()
	path := jsonpath.New(col.Name)
	if err := path.Parse(fmt.Sprintf("{%s}", col.JSONPath)); err != nil {
		t.Fatalf("column %s: %q does not parse: %v", col.Name, col.JSONPath, err)
	}
	path.AllowMissingKeys(true)
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	results, err := path.FindResults(u)
	if err != nil || len(results) == 0 || len(results[0]) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := path.PrintResults(&buf, results[0][:1]); err != nil {
		t.Fatalf("column %s: %v", col.Name, err)
	}
	return buf.String()
}

func accepted(ok bool) []metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return []metav1.Condition{{Type: "Programmed", Status: metav1.ConditionTrue}, {Type: "Accepted", Status: st, Reason: "Any"}}
}

func ancestors(ok ...bool) gwv1.PolicyStatus {
	var st gwv1.PolicyStatus
	for _, o := range ok {
		st.Ancestors = append(st.Ancestors, gwv1.PolicyAncestorStatus{ControllerName: "mcpgate.dev/gateway-controller", Conditions: accepted(o)})
	}
	return st
}

// TestPrinterColumns: `kubectl get` shows an ACCEPTED and an AGE column for every kind:
// the backend's Accepted condition, a policy's first ancestor's (blank without one).
func TestPrinterColumns(t *testing.T) {
	created := metav1.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	meta := metav1.ObjectMeta{Name: "x", CreationTimestamp: created}
	// each kind's objects, and the Accepted column each shows
	cases := map[string][]struct {
		obj  any
		want string
	}{
		"AgentgatewayBackend": {
			{&v1alpha1.AgentgatewayBackend{ObjectMeta: meta, Status: v1alpha1.AgentgatewayBackendStatus{Conditions: accepted(true)}}, "True"},
			{&v1alpha1.AgentgatewayBackend{ObjectMeta: meta}, ""},
		},
		"AgentgatewayPolicy": {
			{&v1alpha1.AgentgatewayPolicy{ObjectMeta: meta, Status: ancestors(false, true)}, "False"},
			{&v1alpha1.AgentgatewayPolicy{ObjectMeta: meta, Status: ancestors(true)}, "True"},
			{&v1alpha1.AgentgatewayPolicy{ObjectMeta: meta}, ""},
		},
		"EnterpriseAgentgatewayPolicy": {
			{&enterprise.EnterpriseAgentgatewayPolicy{ObjectMeta: meta, Status: ancestors(true, false)}, "True"},
			{&enterprise.EnterpriseAgentgatewayPolicy{ObjectMeta: meta}, ""},
		},
	}
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(data, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		kind := crd.Spec.Names.Kind
		objs, ok := cases[kind]
		if !ok {
			t.Errorf("%s: kind %s has no case here", f, kind)
			continue
		}
		seen++
		for _, v := range crd.Spec.Versions {
			cols := map[string]apiextensionsv1.CustomResourceColumnDefinition{}
			for _, c := range v.AdditionalPrinterColumns {
				cols[c.Name] = c
			}
			acc, okA := cols["Accepted"]
			age, okB := cols["Age"]
			if !okA || !okB || acc.Type != "string" || age.Type != "date" {
				t.Errorf("%s %s: printer columns %+v, want Accepted (string) and Age (date)", f, v.Name, v.AdditionalPrinterColumns)
				continue
			}
			for i, o := range objs {
				if got := cell(t, acc, o.obj); got != o.want {
					t.Errorf("%s %s: object %d: Accepted %q, want %q", f, v.Name, i, got, o.want)
				}
				if got, want := cell(t, age, o.obj), created.UTC().Format("2006-01-02T15:04:05Z"); got != want {
					t.Errorf("%s %s: object %d: Age %q, want %q", f, v.Name, i, got, want)
				}
			}
		}
	}
	if seen != len(cases) {
		t.Errorf("found CRDs for %d of the %d kinds", seen, len(cases))
	}
}
