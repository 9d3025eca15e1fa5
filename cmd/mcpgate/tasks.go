package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
)

// tasks runs the long-lived parts of a command. The first that fails stops the others, as the end
// of the parent context does; then the stop functions run, in the order they were added.
type tasks struct {
	g     *errgroup.Group
	ctx   context.Context
	stops []func()
}

func newTasks(ctx context.Context) *tasks {
	g, gctx := errgroup.WithContext(ctx)
	return &tasks{g: g, ctx: gctx}
}

// run starts f; its error, if it is the first, stops every task and is returned by wait.
func (t *tasks) run(name string, f func() error) {
	t.g.Go(func() error {
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// onStop adds f to what runs once the tasks are stopping.
func (t *tasks) onStop(f func()) { t.stops = append(t.stops, f) }

// serveHTTP serves h on lis until the tasks stop, then shuts the server down gracefully.
func (t *tasks) serveHTTP(name string, lis net.Listener, h http.Handler) {
	t.serveServer(name, lis, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second})
}

// serveServer serves srv on lis until the tasks stop, then shuts it down gracefully.
func (t *tasks) serveServer(name string, lis net.Listener, srv *http.Server) {
	t.run(name, func() error {
		if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	t.onStop(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
}

// wait blocks until every task has ended and returns the first error.
func (t *tasks) wait() error {
	t.g.Go(func() error {
		<-t.ctx.Done()
		for _, f := range t.stops {
			f()
		}
		return nil
	})
	return t.g.Wait()
}

// newRegistry returns a Prometheus registry with the Go runtime and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
