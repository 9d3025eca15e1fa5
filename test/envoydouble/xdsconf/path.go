package xdsconf

import (
	"fmt"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/mcpgate/mcpgate/internal/envoypath"
)

// compilePaths reads the connection manager's path normalization options, which
// envoypath.Normalize applies to every request as Envoy does.
func compilePaths(h *hcmv3.HttpConnectionManager, path string) (envoypath.Options, error) {
	// IMPLEMENTATION_SPECIFIC_DEFAULT is KEEP_UNCHANGED in Envoy (the runtime key that could
	// change it is refused by the bootstrap).
	switch a := h.GetPathWithEscapedSlashesAction(); a {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED,
		hcmv3.HttpConnectionManager_REJECT_REQUEST, hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT,
		hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD:
	default:
		return envoypath.Options{}, fmt.Errorf("%s.path_with_escaped_slashes_action: %s not implemented by envoydouble", path, a)
	}
	return envoypath.Options{
		// normalize_path unset: Envoy reads the runtime key http_connection_manager.normalize_path
		// (default 0%), which the double's bootstrap refuses, so unset is false.
		NormalizePath:  h.GetNormalizePath().GetValue(),
		MergeSlashes:   h.GetMergeSlashes(),
		EscapedSlashes: h.GetPathWithEscapedSlashesAction(),
	}, nil
}
