package main

import (
	"context"
	"errors"
)

// runTranslate is being written; see the open issues.
func runTranslate(ctx context.Context, args []string) error {
	return errors.New("not implemented yet")
}
