package telemetry

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// auditSection is the heading of the audit line's fields in docs/design.md.
const auditSection = "### The audit line"

// TestAuditFieldsDocumented: the fields docs/design.md lists for the audit line are the fields
// the audit line has, no more and no fewer. The lines written are of a record with every field
// set, its arguments whole and truncated.
func TestAuditFieldsDocumented(t *testing.T) {
	var out bytes.Buffer
	tel, err := New(Options{Audit: &out, MaxArgumentBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	full := sampleRecord()
	full.Arguments = json.RawMessage(`{"a":1}`)
	full.HasError, full.ErrorCode = true, -32602
	full.Prompt, full.Resource = "greet", "file:///a" // fields of other requests, set here to be written
	tel.Finish(full, full.Time)
	long := sampleRecord()
	tel.Finish(long, long.Time)
	written := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line is not JSON: %v: %s", err, line)
		}
		for k := range m {
			written[k] = true
		}
	}

	doc, err := os.ReadFile("../../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, found := strings.Cut(string(doc), "\n"+auditSection+"\n")
	if !found {
		t.Fatalf("docs/design.md has no section %q", auditSection)
	}
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(section, -1) {
		documented[m[1]] = true
	}
	for _, k := range slices.Sorted(maps.Keys(written)) {
		if !documented[k] {
			t.Errorf("the audit line writes %q, which docs/design.md (%s) does not list", k, auditSection)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(documented)) {
		if !written[k] {
			t.Errorf("docs/design.md (%s) lists %q, which the audit line does not write", auditSection, k)
		}
	}
}
