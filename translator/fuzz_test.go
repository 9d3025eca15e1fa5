package translator_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mcpgate/mcpgate/provider/file"
	"github.com/mcpgate/mcpgate/translator"
)

// FuzzTranslate feeds manifests (the golden inputs and their mutations) through the loader and
// the translator: whatever loads must translate without a panic into resources that pass
// Validate. `go test` runs the seeds; `make fuzz-translator` explores (with a short
// -fuzzminimizetime: minimizing a multi-document input for the default minute per new coverage
// leaves the fuzzer looking idle).
func FuzzTranslate(f *testing.F) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, in := range ins {
		data, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "in.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		res, _, _ := file.Load(path) // bad documents are dropped; the rest must translate
		for _, opts := range []translator.Options{{}, {RequireGatewayClass: true, ExclusivePorts: true, BindAddress: "127.0.0.1"}} {
			out := translator.Translate(res, opts)
			for _, k := range out.GatewayKeys() {
				if err := out.Gateways[k].Validate(); err != nil {
					t.Fatalf("gateway %s: %v", k, err)
				}
			}
			if _, err := out.Marshal("yaml"); err != nil {
				t.Fatal(err)
			}
		}
	})
}
