// Command mcpgate is the mcpgate control plane, ext_proc service and tooling in one binary.
//
// Usage:
//
//	mcpgate run -f PATH...              standalone: files -> xDS + ext_proc (+ Envoy as a child)
//	mcpgate controller                  Kubernetes controller: cluster objects -> xDS, status
//	mcpgate extproc                     the ext_proc gRPC service alone (sidecar)
//	mcpgate translate -f PATH...        print the xDS, policies and status of files
//	mcpgate bootstrap --gateway NS/NAME print an Envoy bootstrap
//	mcpgate version                     (or mcpgate --version)
//
// mcpgate COMMAND --help describes a command and its flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand: a short help line and the function that runs it with its arguments.
type command struct {
	help string
	run  func(ctx context.Context, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"run":        {"standalone: watch files, serve xDS and ext_proc, start Envoy", runStandalone},
		"controller": {"Kubernetes controller: serve xDS from cluster objects, write status", runController},
		"extproc":    {"serve the ext_proc gRPC service alone (the data plane's sidecar)", runExtProc},
		"translate":  {"print the xDS resources, policies and status of manifest files", runTranslate},
		"bootstrap":  {"print an Envoy bootstrap for a gateway", runBootstrap},
		"version":    {"print the version (also: mcpgate --version, -v)", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(dispatch(ctx, os.Args[1:]))
}

// dispatch runs the subcommand named by args[0] and returns the process exit code: 0 on success
// and when help was asked for, 1 when the command failed (bad flags included), 2 when the command
// is missing or unknown.
func dispatch(ctx context.Context, args []string) int {
	cmds := commands()
	if len(args) == 0 {
		usage(cmds)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(cmds)
		return 0
	case "-v", "-version", "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "mcpgate: unknown command %q\n\n", args[0])
		usage(cmds)
		return 2
	}
	if err := cmd.run(ctx, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // the flag set printed the usage asked for
		}
		fmt.Fprintf(os.Stderr, "mcpgate %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// logLevelFlag adds --log-level to fs, the same in every command that logs.
func logLevelFlag(fs *flag.FlagSet, level *slog.Level) {
	fs.TextVar(level, "log-level", slog.LevelInfo, "DEBUG, INFO, WARN or ERROR (any letter case)")
}

// printFlags prints fs's flags as flag.PrintDefaults does, with two dashes before the names
// longer than one letter (--admin-addr, -f), as the docs and kubectl write them; Go's flag
// package reads either.
func printFlags(fs *flag.FlagSet) {
	var b strings.Builder
	out := fs.Output()
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(out)
	for line := range strings.Lines(b.String()) {
		if name, ok := strings.CutPrefix(line, "  -"); ok && len(strings.Fields(name)[0]) > 1 {
			line = "  --" + name
		}
		fmt.Fprint(out, line)
	}
}

func usage(cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(os.Stderr, "usage: mcpgate COMMAND [flags]\n\ncommands:")
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-11s %s\n", n, cmds[n].help)
	}
	fmt.Fprintln(os.Stderr, "\nmcpgate COMMAND --help describes a command and its flags.")
}
