package main

import (
	"context"
	"errors"
)

// runBootstrap is being written; see the open issues.
func runBootstrap(ctx context.Context, args []string) error {
	return errors.New("not implemented yet")
}
