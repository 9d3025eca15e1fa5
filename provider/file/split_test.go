package file

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"path/filepath"
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
		docs, err := splitDocuments([]byte(in))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		var got []string
		for _, d := range docs {
			got = append(got, string(d.data))
			if first := strings.SplitAfter(in, "\n")[d.line-1]; !strings.HasPrefix(string(d.data), first) {
				t.Errorf("%q: document %q says it starts on line %d, which is %q", in, d.data, d.line, first)
			}
		}
		if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
			t.Errorf("%q: documents %q, want %q (YAMLReader)", in, got, want)
		}
	}
	for _, in := range []string{"a: 1\n--- b: 2\n", "--- {a: 1}\n", "a: 1\n----\nb: 2\n"} {
		_, err := splitDocuments([]byte(in))
		_, rerr := readAll(in)
		if err == nil || rerr == nil {
			t.Errorf("%q: error %v, YAMLReader's %v; want both to refuse the separator", in, err, rerr)
		}
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
