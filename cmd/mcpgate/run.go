package main

import (
	"context"
	"errors"
)

// runStandalone is being written; see the open issues.
func runStandalone(ctx context.Context, args []string) error {
	return errors.New("not implemented yet")
}
