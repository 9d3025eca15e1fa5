package main

import (
	"context"
	"errors"
)

// runExtProc is being written; see the open issues.
func runExtProc(ctx context.Context, args []string) error {
	return errors.New("not implemented yet")
}
