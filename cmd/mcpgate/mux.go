package main

import (
	"fmt"

	"github.com/mcpgate/mcpgate/contract"
)

// muxFlags are the flags of `mcpgate extproc` for the mux of multiplexed MCP backends.
type muxFlags struct {
	// listen is where the mux is served (--mux-listen; "": no mux).
	listen string
	// upstream is the mux upstream listener of the one Envoy the sidecar serves (--mux-upstream;
	// "": each Gateway's default, bootstrap.MuxUpstreamPath in os.TempDir()).
	upstream string
}

// check validates the mux flags.
func (f *muxFlags) check() error {
	if f.upstream != "" {
		if err := checkAddr(f.upstream); err != nil {
			return fmt.Errorf("--mux-upstream: %w", err)
		}
	}
	if f.listen != "" {
		if err := checkAddr(f.listen); err != nil {
			return fmt.Errorf("--mux-listen: %w", err)
		}
	}
	return nil
}

// checkAddr checks an address of the form unix:///PATH or HOST:PORT (contract.SplitAddress).
func checkAddr(addr string) error {
	if _, _, err := contract.SplitAddress(addr); err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	return nil
}
