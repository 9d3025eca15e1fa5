package main

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/provider/file"
	"github.com/mcpgate/mcpgate/translator"
	"github.com/mcpgate/mcpgate/xds"
)

// pipeline turns each state of the watched files into the served configuration.
type pipeline struct {
	srv    *xds.Server
	log    *slog.Logger
	envoys *supervisor // nil: no Envoy to start
	opts   translator.Options
	ready  atomic.Bool

	problems    prometheus.Gauge
	translation prometheus.Histogram
	// reported is the problems logged last time, so that each is logged once, when it appears.
	reported map[string]bool
}

func newPipeline(srv *xds.Server, log *slog.Logger, reg prometheus.Registerer, envoys *supervisor) *pipeline {
	p := &pipeline{
		srv: srv, log: log.With("component", "config"), envoys: envoys, reported: map[string]bool{},
		// Every Gateway's Envoy runs on this host: a port belongs to one Gateway, listeners bind
		// loopback.
		// the same Cache in every translation: unchanged policies are not checked again
		opts: translator.Options{BindAddress: "127.0.0.1", ExclusivePorts: true, Cache: translator.NewCache()},
		problems: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcpgate_config_problems", Help: "Problems in the watched manifests: documents that do not load and refused objects or fields.",
		}),
		translation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mcpgate_config_apply_seconds", Help: "Time from a change of the watched files being read to the new snapshot being set.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	if reg != nil {
		reg.MustRegister(p.problems, p.translation)
	}
	return p
}

// apply translates the current objects and serves them: the provider calls it after every
// change. A document that does not load or an object the translator refuses is logged with its
// file, object and field; everything else is served.
func (p *pipeline) apply(res *translator.Resources, src file.Sources, loadErr error) {
	start := time.Now()
	out := translator.Translate(res, p.opts)
	var problems []string
	for _, err := range flatten(loadErr) {
		problems = append(problems, err.Error())
	}
	for _, fe := range out.Status.Problems() {
		problems = append(problems, src.Describe(fe))
	}
	if err := p.srv.Update(out.NodeGroups()); err != nil {
		problems = append(problems, err.Error())
	}
	p.translation.Observe(time.Since(start).Seconds())
	p.problems.Set(float64(len(problems)))
	p.report(problems, src.Warnings)
	gateways := out.GatewayKeys()
	p.log.Info("configuration served", "version", p.srv.Version(), "gateways", gateways, "problems", len(problems), "took", time.Since(start).Round(time.Microsecond))
	p.ready.Store(true)
	if p.envoys != nil {
		p.envoys.sync(gateways)
	}
}

// report logs the problems that are new since the last call and those that are gone.
func (p *pipeline) report(problems, warnings []string) {
	now := map[string]bool{}
	for _, m := range problems {
		now[m] = true
		if !p.reported[m] {
			p.log.Warn("refused: " + m)
		}
	}
	for _, m := range warnings {
		now[m] = true
		if !p.reported[m] {
			p.log.Info("skipped: " + m)
		}
	}
	for m := range p.reported {
		if !now[m] {
			p.log.Info("resolved: " + m)
		}
	}
	p.reported = now
}

// flatten lists the errors joined in err.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
