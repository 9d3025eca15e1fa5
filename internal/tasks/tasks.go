// Package tasks runs the long-lived parts of an mcpgate command (servers, watchers, the
// provider) as one group: the first that fails stops the others, as the end of the parent
// context does; then the stop functions run, in the order they were added.
package tasks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
)

// Group is the long-lived parts of one command. Create it with New, start the parts with Go,
// Serve and ServeServer, then Wait.
type Group struct {
	g     *errgroup.Group
	ctx   context.Context
	stops []func()
}

// New returns a Group whose tasks stop when ctx ends.
func New(ctx context.Context) *Group {
	g, gctx := errgroup.WithContext(ctx)
	return &Group{g: g, ctx: gctx}
}

// Context returns the context of the tasks: it ends when they stop (the parent context ended, or
// a task failed).
func (t *Group) Context() context.Context { return t.ctx }

// Go starts f; its error, if it is the first, stops every task and is returned by Wait, prefixed
// with name.
func (t *Group) Go(name string, f func() error) {
	t.g.Go(func() error {
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// OnStop adds f to what runs once the tasks are stopping.
func (t *Group) OnStop(f func()) { t.stops = append(t.stops, f) }

// Serve serves h on lis until the tasks stop, then shuts the server down gracefully.
func (t *Group) Serve(name string, lis net.Listener, h http.Handler) {
	t.ServeServer(name, lis, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second})
}

// ServeServer serves srv on lis until the tasks stop, then shuts it down gracefully.
func (t *Group) ServeServer(name string, lis net.Listener, srv *http.Server) {
	t.Go(name, func() error {
		if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	t.OnStop(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
}

// Wait blocks until every task has ended and returns the first error.
func (t *Group) Wait() error {
	t.g.Go(func() error {
		<-t.ctx.Done()
		for _, f := range t.stops {
			f()
		}
		return nil
	})
	return t.g.Wait()
}
