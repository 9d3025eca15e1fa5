package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mcpgate/mcpgate/provider/file"
	"github.com/mcpgate/mcpgate/translator"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// errInvalidInput is returned (after the problems are printed) when the input has refusals.
var errInvalidInput = errors.New("the input has problems (listed above)")

// runTranslate prints the xDS resources, policies and status of manifest files.
func runTranslate(_ context.Context, args []string) error {
	return translate(args, os.Stdout, os.Stderr)
}

func translate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mcpgate translate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var paths, classes stringList
	var opts translator.Options
	fs.Var(&paths, "f", "a manifest file or directory (*.yaml, *.yml); repeatable")
	format := fs.String("o", "yaml", "output format: yaml or json")
	gateway := fs.String("gateway", "", "print only this gateway NS/NAME")
	fs.StringVar(&opts.ControllerName, "controller-name", translator.DefaultControllerName, "the GatewayClass controllerName served")
	fs.Var(&classes, "gateway-class", "a further GatewayClass name to serve; repeatable")
	fs.BoolVar(&opts.RequireGatewayClass, "require-gateway-class", false, "do not serve Gateways whose GatewayClass is not in the input")
	fs.StringVar(&opts.BindAddress, "bind-address", "0.0.0.0", "the address Envoy listeners bind (mcpgate run binds 127.0.0.1 unless its --bind-address says otherwise)")
	fs.BoolVar(&opts.ExclusivePorts, "exclusive-ports", false, "all gateways share one host: a port belongs to one Gateway")
	fs.DurationVar(&opts.MessageTimeout, "message-timeout", translator.DefaultMessageTimeout, "the ext_proc message timeout")
	fs.Int64Var(&opts.MaxBodyBytes, "max-body-bytes", translator.DefaultMaxBodyBytes, "the MCP body limit")
	fs.StringVar(&opts.ClusterDomain, "cluster-domain", translator.DefaultClusterDomain, "the Kubernetes cluster's DNS domain: a static target host NAME.NS.svc.DOMAIN names a Service")
	fs.StringVar(&opts.UpstreamCAFile, "upstream-ca-file", translator.DefaultUpstreamCAFile, "the CA bundle (PEM) that Envoy verifies the certificates of TLS targets and backends with, as Envoy reads it (printed as given)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: mcpgate translate -f PATH... [-o yaml|json] [--gateway NS/NAME]\n\n"+
			"Prints per gateway the xDS resources and policies, then the status of every object.\n"+
			"Exits non-zero, listing \"FILE: Kind ns/name: field: message\", when the input has problems.\n\nflags:")
		printFlags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q (give the manifests with -f)", fs.Args())
	}
	if len(paths) == 0 {
		fs.Usage()
		return errors.New("give the manifests with -f PATH")
	}
	if *format != "yaml" && *format != "json" {
		return fmt.Errorf("-o %q: use yaml or json", *format)
	}
	if err := translator.CheckMaxBodyBytes(opts.MaxBodyBytes); err != nil {
		return err
	}
	if err := checkBindAddress(opts.BindAddress); err != nil {
		return err
	}
	opts.GatewayClassNames = classes
	res, src, loadErr := file.Load(paths...)
	for _, w := range src.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if len(src.Objects()) == 0 {
		// nothing to translate: no output that looks like an answer, and the reason once
		if loadErr != nil {
			return loadErr
		}
		return fmt.Errorf("no object that mcpgate reads in %s (%s)", strings.Join(paths, ", "), file.ReadsWhat)
	}
	out := translator.Translate(res, opts)
	var only []string
	if *gateway != "" {
		only = []string{*gateway}
	}
	doc, err := out.Marshal(*format, only...)
	if err != nil {
		return err
	}
	if _, err := stdout.Write(doc); err != nil {
		return err
	}
	bad := false
	if loadErr != nil {
		bad = true
		fmt.Fprintln(stderr, loadErr)
	}
	for _, p := range out.Status.Problems() {
		bad = true
		fmt.Fprintln(stderr, src.Describe(p))
	}
	for _, w := range out.Status.Warnings() {
		fmt.Fprintln(stderr, "warning: "+src.Describe(w))
	}
	if bad {
		return errInvalidInput
	}
	return nil
}
