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

	"github.com/mcpgate/mcpgate/contract"
)

// auditSection and metadataSection are the headings of the audit line's fields and of the
// access log's mcpgate fields in docs/design.md.
const (
	auditSection    = "### The audit line"
	metadataSection = "## Metadata in the `mcpgate` namespace"
)

// designSection returns the text of docs/design.md under heading, up to the next heading.
func designSection(t *testing.T, heading string) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, found := strings.Cut(string(doc), "\n"+heading+"\n")
	if !found {
		t.Fatalf("docs/design.md has no section %q", heading)
	}
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	return section
}

// TestAuditFieldsDocumented: the fields docs/design.md lists for the audit line are the fields
// the audit line has, no more and no fewer. The lines written are of a record with every field
// set, its arguments whole and truncated.
func TestAuditFieldsDocumented(t *testing.T) {
	written := auditFieldsWritten(t)
	section := designSection(t, auditSection)
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

// TestMetadataFieldsOnAuditLine: each field of the mcpgate metadata namespace (the access log's
// mcpgate fields, contract.Fields) is a field of the audit line by the same name, so that one
// name finds an exchange in both logs.
func TestMetadataFieldsOnAuditLine(t *testing.T) {
	written := auditFieldsWritten(t)
	for _, f := range contract.Fields() {
		if !written[f.Name] {
			t.Errorf("the access log's mcpgate.%s is no field of the audit line", f.Name)
		}
	}
}

// TestMetadataFieldsDocumented: the fields docs/design.md's table lists for the mcpgate metadata
// namespace (the access log's mcpgate fields) are contract.Fields(), no more and no fewer.
func TestMetadataFieldsDocumented(t *testing.T) {
	section := designSection(t, metadataSection)
	documented := map[string]bool{}
	name := regexp.MustCompile("`([a-z_]+)`")
	for _, row := range regexp.MustCompile(`(?m)^\| ([^|]+) \|`).FindAllStringSubmatch(section, -1) {
		for _, m := range name.FindAllStringSubmatch(row[1], -1) {
			documented[m[1]] = true
		}
	}
	fields := map[string]bool{}
	for _, f := range contract.Fields() {
		fields[f.Name] = true
		if !documented[f.Name] {
			t.Errorf("contract.Fields() has %q, which docs/design.md (%s) does not list", f.Name, metadataSection)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(documented)) {
		if !fields[k] {
			t.Errorf("docs/design.md (%s) lists %q, which contract.Fields() does not have", metadataSection, k)
		}
	}
}

// auditFieldsWritten returns the fields of the audit lines of a record with every field set,
// its arguments whole and truncated.
func auditFieldsWritten(t *testing.T) map[string]bool {
	t.Helper()
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
	return written
}
