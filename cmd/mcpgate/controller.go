package main

import (
	"context"
	"errors"
)

// runController is being written; see the open issues.
func runController(ctx context.Context, args []string) error {
	return errors.New("not implemented yet")
}
