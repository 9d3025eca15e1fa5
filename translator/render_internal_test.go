package translator

import (
	"encoding/json"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestOrderedYAML: printed YAML keeps the members in the JSON's order (Envoy's field order, name
// first) and reads back, with YAML 1.1 readers too (kubectl's), as the same JSON: strings that
// such a reader would take for a boolean or a sexagesimal number are quoted.
func TestOrderedYAML(t *testing.T) {
	js := `{"name":"c1","type":"STATIC","values":["on","Yes","n","OFF","1:20","-1:20:30.5","true","1","","a: b","x\ny\n","%%REQ","http://h:80/p"],"nested":{"z":1,"a":null,"m":{}}}`
	y, err := orderedYAML([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(y), "name: c1\ntype: STATIC\n") {
		t.Errorf("members not in the JSON's order:\n%s", y)
	}
	back, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	if err := json.Unmarshal([]byte(js), &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(back, &got); err != nil {
		t.Fatal(err)
	}
	if w, g := mustJSON(t, want), mustJSON(t, got); w != g {
		t.Errorf("read back by a YAML 1.1 reader:\n got %s\nwant %s\nfrom\n%s", g, w, y)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
