package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestDispatchExitCodes: asking for help succeeds, for mcpgate and for each command; a missing or
// unknown command is a usage error (2); a command that fails, bad flags included, exits 1.
func TestDispatchExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"--help"}, 0},
		{[]string{"-h"}, 0},
		{[]string{"help"}, 0},
		{[]string{"version"}, 0},
		{[]string{"--version"}, 0},
		{[]string{"-v"}, 0},
		{[]string{"translate", "--no-such-flag"}, 1},
		{[]string{"translate", "-f", "/nonexistent/mcpgate/manifests"}, 1},
	}
	for name := range commands() {
		cases = append(cases, struct {
			args []string
			want int
		}{[]string{name, "--help"}, 0})
	}
	for _, c := range cases {
		if got := dispatch(t.Context(), c.args); got != c.want {
			t.Errorf("mcpgate %s: exit %d, want %d", strings.Join(c.args, " "), got, c.want)
		}
	}
}

// stderrOf runs f and returns what it wrote to os.Stderr, where the commands print their usage.
func stderrOf(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	got := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		got <- string(b)
	}()
	func() {
		defer func() { os.Stderr = saved }() // even when f fails the test
		f()
	}()
	w.Close()
	return <-got
}

// TestUsage: mcpgate's help names every command and how to get a command's help; each command's
// help starts with its usage line and a description, then its flags.
func TestUsage(t *testing.T) {
	top := stderrOf(t, func() { dispatch(t.Context(), []string{"--help"}) })
	for name := range commands() {
		if !strings.Contains(top, "\n  "+name+" ") {
			t.Errorf("mcpgate --help does not list %s:\n%s", name, top)
		}
	}
	if !strings.Contains(top, "mcpgate COMMAND --help") {
		t.Errorf("mcpgate --help does not say how to get a command's help:\n%s", top)
	}
	for name := range commands() {
		help := stderrOf(t, func() { dispatch(t.Context(), []string{name, "--help"}) })
		usage, rest, _ := strings.Cut(help, "\n\n")
		flags := name == "version" || strings.Contains(rest, "\n\nflags:\n  --") // version has none
		if !strings.HasPrefix(usage, "usage: mcpgate "+name) || rest == "" || !flags {
			t.Errorf("mcpgate %s --help: want a usage line, a description and the flags:\n%s", name, help)
		}
		// Flags as the docs write them: --admin-addr, -f.
		for line := range strings.Lines(rest) {
			if strings.HasPrefix(line, "  -") && !strings.HasPrefix(line, "  --") && len(strings.Fields(line)[0]) > 2 {
				t.Errorf("mcpgate %s --help: a long flag with one dash: %q", name, line)
			}
			// "--name TYPE": a backquoted word in a flag's usage would replace TYPE (flag.UnquoteUsage)
			if strings.HasPrefix(line, "  -") && len(strings.Fields(line)) > 2 {
				t.Errorf("mcpgate %s --help: a flag line that is more than its name and type: %q", name, line)
			}
		}
	}
}
