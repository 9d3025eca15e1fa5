package main

import (
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
