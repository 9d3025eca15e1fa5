package translator_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/provider/file"
	"github.com/mcpgate/mcpgate/translator"
)

var update = flag.Bool("update", false, "rewrite translator/testdata/*.out.yaml from the current output")

// testOptions is the "# options: {...}" header line of a golden input.
type testOptions struct {
	ControllerName      string   `json:"controllerName"`
	GatewayClassNames   []string `json:"gatewayClassNames"`
	RequireGatewayClass bool     `json:"requireGatewayClass"`
	BindAddress         string   `json:"bindAddress"`
	ExclusivePorts      bool     `json:"exclusivePorts"`
	MessageTimeout      string   `json:"messageTimeout"`
	MaxBodyBytes        int64    `json:"maxBodyBytes"`
}

func readOptions(t *testing.T, path string) translator.Options {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var opts translator.Options
	for _, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "# options:")
		if !ok {
			continue
		}
		var to testOptions
		dec := json.NewDecoder(strings.NewReader(rest))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&to); err != nil {
			t.Fatalf("%s: options: %v", path, err)
		}
		opts = translator.Options{ControllerName: to.ControllerName, GatewayClassNames: to.GatewayClassNames,
			RequireGatewayClass: to.RequireGatewayClass, BindAddress: to.BindAddress, ExclusivePorts: to.ExclusivePorts,
			MaxBodyBytes: to.MaxBodyBytes}
		if to.MessageTimeout != "" {
			if opts.MessageTimeout, err = time.ParseDuration(to.MessageTimeout); err != nil {
				t.Fatalf("%s: options: %v", path, err)
			}
		}
	}
	return opts
}

// loadInputs reads a golden input (one file, or the files of the lab case) with the real loader.
func loadInputs(t *testing.T, paths ...string) *translator.Resources {
	t.Helper()
	res, _, err := file.Load(paths...)
	if err != nil {
		t.Fatalf("load %v: %v", paths, err)
	}
	return res
}

// shuffled returns a copy of res with every list (every field, so none is forgotten) in a
// random order.
func shuffled(res *translator.Resources, r *rand.Rand) *translator.Resources {
	cp := *res
	v := reflect.ValueOf(&cp).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() != reflect.Slice {
			continue
		}
		c := reflect.MakeSlice(f.Type(), f.Len(), f.Len())
		reflect.Copy(c, f)
		r.Shuffle(c.Len(), reflect.Swapper(c.Interface()))
		f.Set(c)
	}
	return &cp
}

// TestGolden translates every testdata/NAME.in.yaml and compares the result with NAME.out.yaml.
// It also checks that every generated resource passes ValidateAll() and Envoy's config checks,
// and that the output does not depend on the order of the input.
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			opts := readOptions(t, in)
			res := loadInputs(t, in)
			runGolden(t, res, opts, strings.TrimSuffix(in, ".in.yaml")+".out.yaml")
		})
	}
	if len(ins) < 17 {
		t.Errorf("found %d golden inputs, want at least 17 (the lab and 16 more)", len(ins))
	}
}

// TestSchedules translates the golden inputs and larger generated ones with one CPU and with
// eight: the stages that translate objects concurrently (forEach) must give the output of a
// sequential translation, whatever the machine's CPU count.
func TestSchedules(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type input struct {
		name string
		res  *translator.Resources
		opts translator.Options
	}
	var inputs []input
	for _, in := range ins {
		inputs = append(inputs, input{in, loadInputs(t, in), readOptions(t, in)})
	}
	inputs = append(inputs,
		input{"300 routes", benchResources(300, false, 16), translator.Options{}},
		input{"300 routes with hostnames", withHostnames(benchResources(300, false, 16)), translator.Options{}},
		input{"200 JWT policies", benchResources(200, true, 1), translator.Options{}},
		input{"a route under 2,000 Gateway policies", withGatewayPolicies(benchResources(1, false, 1), 2000), translator.Options{}})
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, in := range inputs {
		var outs [2][]byte
		for i, procs := range []int{1, 8} {
			runtime.GOMAXPROCS(procs)
			if outs[i], err = translator.Translate(in.res, in.opts).Marshal("yaml"); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(outs[0], outs[1]) {
			t.Errorf("%s: the output with 8 CPUs differs from the output with one:\n%s", in.name, lineDiff(string(outs[0]), string(outs[1])))
		}
	}
}

// withGatewayPolicies adds n authorization policies on res's Gateway (each of its routes then
// merges all of them, in age order).
func withGatewayPolicies(res *translator.Resources, n int) *translator.Resources {
	gw := res.Gateways[0]
	for i := range n {
		res.Policies = append(res.Policies, &v1alpha1.AgentgatewayPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("gw-%d", i), Namespace: gw.Namespace},
			Spec: v1alpha1.AgentgatewayPolicySpec{
				TargetRefs: []v1alpha1.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "Gateway", Name: gwv1.ObjectName(gw.Name)}},
				Traffic: &v1alpha1.TrafficPolicy{Authorization: &v1alpha1.Authorization{Policy: v1alpha1.AuthorizationPolicy{
					MatchExpressions: []v1alpha1.CELExpression{v1alpha1.CELExpression(fmt.Sprintf(`jwt.sub != "user-%d"`, i))}}}},
			},
		})
	}
	return res
}

// TestGoldenLab translates the lab's example directory, the input of `make run`.
func TestGoldenLab(t *testing.T) {
	res := loadInputs(t, "../examples/mcp-connectivity")
	runGolden(t, res, translator.Options{BindAddress: "127.0.0.1", ExclusivePorts: true}, "testdata/lab-example-dir.out.yaml")
}

func runGolden(t *testing.T, res *translator.Resources, opts translator.Options, outPath string) {
	t.Helper()
	out := translator.Translate(res, opts)
	for _, k := range out.GatewayKeys() {
		if err := out.Gateways[k].Validate(); err != nil {
			t.Errorf("gateway %s: generated resources are not valid:\n%v", k, err)
		}
	}
	checkOwnedConditions(t, &out.Status, opts.ControllerName)
	got, err := out.Marshal("yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	cached := opts
	cached.Cache = translator.NewCache()
	for i := 0; i < 3; i++ {
		o := opts
		if i > 0 {
			o = cached // the last one runs with what the one before left in the Cache
		}
		again, err := translator.Translate(shuffled(res, r), o).Marshal("yaml")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, again) {
			t.Fatalf("output depends on the input order (shuffle %d)", i)
		}
	}
	if *update {
		if err := os.WriteFile(outPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatalf("%v (run go test ./translator -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run go test ./translator -update after checking the change):\n%s", outPath, lineDiff(string(want), string(got)))
	}
}

// checkOwnedConditions checks that translator.OwnsCondition owns every condition type of st:
// the Kubernetes provider replaces or removes only those when it writes status back and keeps
// the others (other controllers'), so a type it did not know would pile up.
func checkOwnedConditions(t *testing.T, st *translator.Status, controllerName string) {
	t.Helper()
	check := func(obj string, conds []metav1.Condition) {
		for _, c := range conds {
			if !translator.OwnsCondition(controllerName, c.Type) {
				t.Errorf("%s: condition type %s is not one translator.OwnsCondition owns", obj, c.Type)
			}
		}
	}
	for name, s := range st.GatewayClasses {
		check("GatewayClass "+name, s.Conditions)
	}
	for nn, s := range st.Gateways {
		check("Gateway "+nn.String(), s.Conditions)
		for _, l := range s.Listeners {
			check("Gateway "+nn.String()+" listener "+string(l.Name), l.Conditions)
		}
	}
	for nn, s := range st.HTTPRoutes {
		for _, p := range s.Parents {
			check("HTTPRoute "+nn.String(), p.Conditions)
		}
	}
	for nn, s := range st.Backends {
		check("AgentgatewayBackend "+nn.String(), s.Conditions)
	}
	for k, s := range st.Policies {
		for _, a := range s.Ancestors {
			check(k.String(), a.Conditions)
		}
	}
}

// lineDiff shows the first differing lines.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return "line " + strconv.Itoa(i+1) + ":\n- " + a + "\n+ " + b
		}
	}
	return "(same lines, different bytes)"
}
