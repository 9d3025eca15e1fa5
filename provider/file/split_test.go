package file

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// TestSplitDocumentsAsKubectl checks that splitDocuments finds the documents kubectl's reader
// (apimachinery's YAMLReader) finds, and where each starts.
func TestSplitDocumentsAsKubectl(t *testing.T) {
	for _, in := range []string{
		"a: 1\n",
		"---\na: 1\n---\nb: 2\n",
		"a: 1\n--- # next\nb: 2\n---\n",
		"a: 1\n---\n---\nb: 2",
		"# only a comment\n---\n\n---\nc: 3\n",
		"",
		"\n\n",
	} {
		var want []string
		r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(in)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%q: YAMLReader: %v", in, err)
			}
			want = append(want, string(doc))
		}
		var got []string
		for _, d := range splitDocuments([]byte(in)) {
			if d.err != "" {
				t.Fatalf("%q: %s", in, d.err)
			}
			got = append(got, string(d.data))
			if first := strings.SplitAfter(in, "\n")[d.line-1]; !strings.HasPrefix(string(d.data), first) {
				t.Errorf("%q: document %q says it starts on line %d, which is %q", in, d.data, d.line, first)
			}
		}
		if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
			t.Errorf("%q: documents %q, want %q (YAMLReader)", in, got, want)
		}
	}
	// YAMLReader refuses a line starting with "---" that other text follows, and stops there;
	// splitDocuments refuses the document that line starts, naming the line, and keeps the
	// documents before and after it
	for _, c := range []struct {
		in   string
		line int      // of the refused separator
		bad  int      // the refused document's index
		good []string // the other documents
	}{
		{"a: 1\n--- b: 2\n", 2, 1, []string{"a: 1\n"}},
		{"--- {a: 1}\n", 1, 0, nil},
		{"a: 1\n----\nb: 2\n---\nc: 3\n", 2, 1, []string{"a: 1\n", "c: 3\n"}},
		{"a: 1\nb: 2\n---\nc: 3\n--- x\nd: 4\n---\ne: 5\n", 5, 2, []string{"a: 1\nb: 2\n", "c: 3\n", "e: 5\n"}},
	} {
		if _, rerr := readAll(c.in); rerr == nil {
			t.Errorf("%q: YAMLReader reads it; want it to refuse the separator", c.in)
		}
		var good []string
		docs := splitDocuments([]byte(c.in))
		for i, d := range docs {
			switch {
			case i == c.bad:
				if want := fmt.Sprintf("line %d: invalid YAML document separator", c.line); !strings.HasPrefix(d.err, want) || d.line != c.line {
					t.Errorf("%q: document %d: line %d, error %q; want it refused: %q", c.in, i+1, d.line, d.err, want)
				}
			case d.err != "":
				t.Errorf("%q: document %d: %s", c.in, i+1, d.err)
			default:
				good = append(good, string(d.data))
			}
		}
		if c.bad >= len(docs) || !slices.Equal(good, c.good) {
			t.Errorf("%q: documents %q, want %q and the refused one at index %d", c.in, good, c.good, c.bad)
		}
	}
}

// TestBadSeparatorKeepsTheOtherDocuments: a separator line kubectl refuses ("--- x") loses only
// the document it starts, and the error names the file line.
func TestBadSeparatorKeepsTheOtherDocuments(t *testing.T) {
	f := filepath.Join(t.TempDir(), "three.yaml")
	write(t, f, "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n--- x\n"+
		"apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: [{port: 80}]}\n---\n"+
		"apiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec: {ports: [{port: 80}]}\n")
	res, _, err := Load(f)
	want := f + `: document 2: line 5: invalid YAML document separator "--- x"`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %v\nwant it to start with %q", err, want)
	}
	var names []string
	for _, s := range res.Services {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"a", "c"}) {
		t.Fatalf("services %q, want a and c (b follows the refused separator)", names)
	}
}

// readAll reads every document of in with YAMLReader and returns how many it read and its error.
func readAll(in string) (n int, err error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(in)))
	for ; ; n++ {
		if _, err := r.Read(); err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
	}
}

// TestYAMLErrorNamesFileLine: a YAML error in a file's second document names the line of the
// file, not of the document.
func TestYAMLErrorNamesFileLine(t *testing.T) {
	f := filepath.Join(t.TempDir(), "two.yaml")
	var b bytes.Buffer
	b.WriteString("---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n--- # the broken one\n")
	b.WriteString("apiVersion: v1\nkind: Service\nmetadata:\n  name: t\nspec\n  ports: []\n") // "spec" lacks its ':': the parser stops on file line 12
	write(t, f, b.String())
	_, _, err := Load(f)
	if err == nil {
		t.Fatal("Load: no error")
	}
	if want := f + ": document 2: not valid YAML: yaml: line 12:"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q\nwant it to contain %q", err, want)
	}
}
