// Command envoydouble is a test double of Envoy for machines without Envoy. It is started like
// Envoy (envoydouble -c bootstrap.yaml [--log-level info] [--service-node ID] [--service-cluster C]),
// reads the same bootstrap, takes its configuration over Delta ADS and serves HTTP the way Envoy
// does with the configuration mcpgate emits. What it does not reproduce it refuses: a bootstrap
// error exits non-zero, an xDS resource it does not understand is NACKed naming the field.
//
// Other common Envoy flags (--concurrency, --base-id, --drain-time-s, ...) are accepted and
// ignored. --mode validate checks the bootstrap and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/test/envoydouble/double"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "envoydouble:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("envoydouble", flag.ContinueOnError)
	var config, level, node, cluster, mode string
	for _, n := range []string{"c", "config-path"} {
		fs.StringVar(&config, n, "", "bootstrap file (YAML or JSON)")
	}
	for _, n := range []string{"l", "log-level"} {
		fs.StringVar(&level, n, "info", "log level: trace, debug, info, warning, error, critical, off")
	}
	fs.StringVar(&node, "service-node", "", "node.id override")
	fs.StringVar(&cluster, "service-cluster", "", "node.cluster override")
	fs.StringVar(&mode, "mode", "serve", "serve or validate")
	// Accepted and ignored, as these only tune Envoy's process.
	drainTime := fs.Int("drain-time-s", 600, "how long a graceful drain (admin /drain_listeners?graceful) accepts new connections")
	for _, n := range []string{"concurrency", "base-id", "parent-shutdown-time-s", "log-format",
		"log-path", "component-log-level", "service-zone", "drain-strategy", "file-flush-interval-msec",
		"local-address-ip-version", "restart-epoch", "hot-restart-version"} {
		fs.String(n, "", "ignored (Envoy process tuning)")
	}
	for _, n := range []string{"disable-hot-restart", "use-dynamic-base-id", "allow-unknown-static-fields",
		"reject-unknown-dynamic-fields", "ignore-unknown-dynamic-fields", "enable-fine-grain-logging", "cpuset-threads"} {
		fs.Bool(n, false, "ignored (Envoy process tuning)")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := onceEach(fs, args); err != nil {
		return err
	}
	if config == "" {
		return fmt.Errorf("-c bootstrap.yaml is required")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slogLevel(level)}))
	if mode == "validate" {
		if _, err := xdsconf.LoadBootstrap(config); err != nil {
			return err
		}
		fmt.Printf("configuration '%s' OK\n", config)
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	d, err := double.Start(ctx, double.Options{Bootstrap: config, ServiceNode: node, ServiceCluster: cluster,
		Log: log, AccessLog: os.Stdout, DrainTime: time.Duration(*drainTime) * time.Second})
	if err != nil {
		return err
	}
	log.Info("envoydouble started: a test double of Envoy, not Envoy", "admin", d.AdminAddr)
	select {
	case <-ctx.Done():
	case <-d.Quit():
	}
	d.Close()
	return nil
}

func slogLevel(l string) slog.Level {
	switch strings.ToLower(l) {
	case "trace", "debug":
		return slog.LevelDebug
	case "warning", "warn":
		return slog.LevelWarn
	case "error", "critical", "off":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// onceEach refuses a flag given twice, as Envoy's command line parser (TCLAP) does: "Argument
// already set!". Go's flag package would keep the last value silently. -c and --config-path are
// one flag, like -l and --log-level.
func onceEach(fs *flag.FlagSet, args []string) error {
	alias := map[string]string{"c": "config-path", "l": "log-level"}
	seen := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if f == nil {
			continue // fs.Parse has refused it already
		}
		if long, ok := alias[name]; ok {
			name = long
		}
		if seen[name] {
			return fmt.Errorf("flag --%s given twice (Envoy refuses it: Argument already set!)", name)
		}
		seen[name] = true
		if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !isBool {
			i++ // its value
		}
	}
	return nil
}
