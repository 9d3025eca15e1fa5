package mux

import (
	"encoding/json"
	"testing"

	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// TestPrefixItem: the item's name prefixed, everything else kept, whatever the item's layout;
// the same names as decoding the item whole would give.
func TestPrefixItem(t *testing.T) {
	for item, want := range map[string]string{
		`{"name":"x","description":"d"}`: `{"name":"a_x","description":"d"}`,
		"{ \"inputSchema\" : {\"name\":\"inner\",\"p\":[1,{\"name\":2}]} ,\n \"name\" : \"x\" }": "{ \"inputSchema\" : {\"name\":\"inner\",\"p\":[1,{\"name\":2}]} ,\n \"name\" : \"a_x\" }",
		`{"description":"say \"name\":\"y\" \\","name":"x","n":-1.5e3,"b":true,"z":null}`:        `{"description":"say \"name\":\"y\" \\","name":"a_x","n":-1.5e3,"b":true,"z":null}`,
		`{"name":"\u00e9\"x"}`: `{"name":"a_é\"x"}`,
		// Decoded whole: an escaped key, a repeated name (the last wins).
		`{"na\u006de":"x"}`:            `{"name":"a_x"}`,
		`{"name":"x","na\u006de":"y"}`: `{"name":"a_y"}`,
		`{"name":"x","name":"y"}`:      `{"name":"a_y"}`,
		// Not an item.
		`{"name":7}`:    ``,
		`{"name":""}`:   ``,
		`{"title":"x"}`: ``,
		`["name","x"]`:  ``,
	} {
		got, _, ok := prefixItem(json.RawMessage(item), "a", mcp.Tool, "name")
		if string(got) != want || ok != (want != "") {
			t.Errorf("prefixItem(%s) = %s, %v; want %s", item, got, ok, want)
		}
		if ok && !json.Valid(got) {
			t.Errorf("prefixItem(%s) = %s: not JSON", item, got)
		}
	}
}

// TestTagItem: under prefixMode Never a listed item keeps its name and gets its target in
// _meta["mcpgate.dev/target"], over any value the target sent (also under an escaped key, which
// the front hop's decoder would read as _meta, or a key equal to either but for letter case,
// which would make the front hop's reading ambiguous); its other _meta members stay.
func TestTagItem(t *testing.T) {
	for item, want := range map[string]string{
		`{"name":"x"}`:       `{"name":"x","_meta":{"mcpgate.dev/target":"a"}}`,
		`{"name":"x"}` + " ": `{"name":"x","_meta":{"mcpgate.dev/target":"a"}}`,
		`{"name":"x","_meta":{"mcpgate.dev/target":"b","k":1}}`:                    `{"_meta":{"k":1,"mcpgate.dev/target":"a"},"name":"x"}`,
		`{"name":"x","_meta":7}`:                                                   `{"_meta":{"mcpgate.dev/target":"a"},"name":"x"}`,
		`{"name":"x","\u005fmeta":{"mcpgate.dev/target":"b"}}`:                     `{"_meta":{"mcpgate.dev/target":"a"},"name":"x"}`,
		`{"name":"x","_meta":{"MCPGATE.dev/target":"b","k":1}}`:                    `{"_meta":{"k":1,"mcpgate.dev/target":"a"},"name":"x"}`,
		`{"name":"x","_meta":{"mcpgate.dev/TARGET":"b","mcpgate.dev/target":"b"}}`: `{"_meta":{"mcpgate.dev/target":"a"},"name":"x"}`,
		`{"name":"x","_Meta":{"mcpgate.dev/target":"b"}}`:                          `{"_meta":{"mcpgate.dev/target":"a"},"name":"x"}`,
		`{"name":"x","_meta":{"k":1},"_META":{"mcpgate.dev/target":"b"}}`:          `{"_meta":{"k":1,"mcpgate.dev/target":"a"},"name":"x"}`,
		`{"name":"x","\u005fMeta":{"mcpgate.dev/target":"b"}}`:                     `{"_meta":{"mcpgate.dev/target":"a"},"name":"x"}`,
		`{"title":"x"}`: ``,
		`{"name":""}`:   ``,
	} {
		got, name, ok := tagItem(json.RawMessage(item), "a", "name")
		if string(got) != want || ok != (want != "") || (ok && name != "x") {
			t.Errorf("tagItem(%s) = %s, %q, %v; want %s, \"x\"", item, got, name, ok, want)
		}
	}
}

// TestMergeInitialize: the lowest version, the union of the capabilities the mux serves (not
// tasks, experimental or one it does not know, whose methods it answers -32601), each target's
// instructions under its name.
func TestMergeInitialize(t *testing.T) {
	results := []json.RawMessage{
		json.RawMessage(`{"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":true},"tasks":{"list":{},"requests":{"tools":{"call":{}}}},"experimental":{"x":{}},"logging":{}},"serverInfo":{"name":"a","version":"1"},"instructions":"use a"}`),
		json.RawMessage(`{"protocolVersion":"2025-06-18","capabilities":{"tools":{"listChanged":false},"resources":{"subscribe":true},"completions":{},"prompts":{},"someday":{}},"serverInfo":{"name":"b","version":"2"}}`),
	}
	raw, err := mergeInitialize(results, []string{"a", "b"}, "v")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := `{"capabilities":{"completions":{},"logging":{},"prompts":{},"resources":{"subscribe":true},"tools":{"listChanged":true}},"instructions":"a: use a","protocolVersion":"2025-06-18","serverInfo":{"name":"mcpgate","version":"v"}}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Errorf("mergeInitialize = %s\nwant %s", b, want)
	}
}
