package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// runBootstrap prints the Envoy bootstrap of one gateway.
func runBootstrap(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("mcpgate bootstrap", flag.ContinueOnError)
	var o bootstrap.Options
	var tlsDir string
	fs.StringVar(&o.Gateway, "gateway", "", "the gateway NS/NAME (required): Envoy's node cluster, hence its xDS node group")
	fs.StringVar(&o.NodeID, "node-id", "", "Envoy's node id (default: the gateway)")
	fs.StringVar(&o.XDSAddr, "xds-addr", bootstrap.DefaultXDSAddr, "mcpgate's xDS server: HOST:PORT or unix:///PATH")
	fs.StringVar(&o.ExtProcAddr, "extproc-addr", bootstrap.DefaultExtProcAddr, "mcpgate's ext_proc server: HOST:PORT or unix:///PATH")
	// The name `mcpgate run` gives it: --admin-addr is mcpgate's own admin elsewhere.
	fs.StringVar(&o.AdminAddr, "envoy-admin-addr", bootstrap.DefaultAdminAddr, "Envoy's admin listener: IP:PORT or unix:///PATH")
	fs.StringVar(&o.MuxAddr, "mux-addr", bootstrap.DefaultMuxAddr, "mcpgate's mux, which serves multiplexed MCP backends (several targets behind one): HOST:PORT or unix:///PATH")
	fs.StringVar(&o.MuxUpstream, "mux-upstream", "", "the Unix socket, unix:///PATH, of Envoy's listener through which the mux reaches the targets (default: unix:// + mcpgate-up-HASH.sock, one per Gateway, in the temporary folder)")
	fs.StringVar(&tlsDir, "xds-tls-dir", "", "mutual TLS to the xDS server with the certificate in this directory of Envoy's host (tls.crt, tls.key, ca.crt); the server's certificate must name --xds-addr's host")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: mcpgate bootstrap --gateway NS/NAME [flags]\n\nPrints an Envoy bootstrap (YAML) that takes its configuration from mcpgate over Delta ADS.\n\nflags:")
		printFlags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.Gateway == "" {
		fs.Usage()
		return errors.New("--gateway NS/NAME is required: the Gateway whose configuration this Envoy takes")
	}
	if tlsDir != "" {
		var err error
		if o.XDSTLS, err = bootstrap.TLSDir(tlsDir, o.XDSAddr); err != nil {
			return fmt.Errorf("--xds-tls-dir: %w", err)
		}
	}
	y, err := bootstrap.Generate(o)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(y)
	return err
}
