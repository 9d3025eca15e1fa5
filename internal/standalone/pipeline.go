package standalone

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/supervisor"
	"github.com/mcpgate/mcpgate/provider/file"
	"github.com/mcpgate/mcpgate/translator"
	"github.com/mcpgate/mcpgate/xds"
)

// pipeline turns each state of the watched files into the served configuration.
type pipeline struct {
	srv    *xds.Server
	log    *slog.Logger
	envoys *supervisor.Supervisor // nil: no Envoy to start
	opts   translator.Options
	ready  atomic.Bool

	problems    prometheus.Gauge
	translation prometheus.Histogram
	// reported is what report logged last time (by line), so that each is logged once, when
	// it appears.
	reported map[string]reportedNote
	// refusals is what the translator refused in the served configuration: a reload that adds
	// to it is not served while it changes files that have a served content.
	refusals map[string]bool
	// notServed is what the reload being served would have refused: the files holding it went
	// back to their last good content.
	notServed []string
	// objects are the objects of the served reload and where they were read; nil before the
	// first.
	objects map[translator.ObjectKey]file.Location
}

// logChanges logs the objects that the reload being served adds to or removes from the served
// ones (a policy deleted is worth a line of its own), and those whose text changed in the files
// that changed (changed: an edit of a served file says what it touched, not every object of
// the file).
func (p *pipeline) logChanges(objects map[translator.ObjectKey]file.Location, changed []string) {
	for _, k := range slices.SortedFunc(maps.Keys(p.objects), compareKeys) {
		if _, ok := objects[k]; !ok {
			p.log.Info("removed: " + p.objects[k].File + ": " + k.String())
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(objects), compareKeys) {
		was, served := p.objects[k]
		switch {
		case !served:
			p.log.Info("added: " + objects[k].File + ": " + k.String())
		case slices.Contains(changed, objects[k].File) && was.Digest != objects[k].Digest:
			p.log.Info("changed: " + objects[k].File + ": " + k.String())
		}
	}
}

func compareKeys(a, b translator.ObjectKey) int { return strings.Compare(a.String(), b.String()) }

// newPipeline returns the pipeline that serves on srv, translating with opts (mcpgate run's
// --bind-address, --max-body-bytes and --upstream-ca-file).
func newPipeline(srv *xds.Server, log *slog.Logger, reg prometheus.Registerer, envoys *supervisor.Supervisor, opts translator.Options) *pipeline {
	// Every Gateway's Envoy runs on this host: a port belongs to one Gateway.
	opts.ExclusivePorts = true
	// the same Cache in every translation: unchanged policies are not checked again
	opts.Cache = translator.NewCache()
	p := &pipeline{
		srv: srv, log: log.With("component", "config"), envoys: envoys, reported: map[string]reportedNote{},
		opts: opts,
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
// file, object and field; everything else is served. A reload whose translation refuses
// something the served configuration did not is not served while it changes files that were
// served before (a bad edit of a served file): apply logs what it would refuse and returns those
// files, which the provider gives back at their served content (file.Watch): the changed files
// whose own objects are refused anew, else, when only unchanged files are (a backend renamed
// under its routes, a new Gateway taking a served Gateway's port), every changed and every new
// file. A new file has nothing to go back to: held back, nothing of it is served until a later
// reload no longer refuses what it takes away from the other files; its own refusals are served
// (its objects refused, fail closed).
func (p *pipeline) apply(res *translator.Resources, src file.Sources, loadErr error) (holdBack []string) {
	start := time.Now()
	out := translator.Translate(res, p.opts)
	refusals, added, hold := judgeEdit(p.refusals, out.Status.Problems(), src)
	if len(hold) > 0 {
		// reported with the reload of the held back files that comes next
		p.notServed = append(p.notServed, added...)
		return hold
	}
	var problems []string
	for _, err := range flatten(loadErr) {
		problems = append(problems, err.Error())
	}
	problems = append(problems, slices.Sorted(maps.Keys(refusals))...)
	notServed := p.notServed
	p.notServed = nil
	if err := p.srv.Update(out.NodeGroups()); err != nil {
		problems = append(problems, err.Error())
	}
	p.refusals = refusals
	p.translation.Observe(time.Since(start).Seconds())
	nproblems := len(problems) + len(notServed)
	p.problems.Set(float64(nproblems))
	var warnings []string
	for _, w := range out.Status.Warnings() {
		warnings = append(warnings, src.Describe(w))
	}
	objects := src.Objects()
	if p.objects != nil {
		p.logChanges(objects, src.Changed)
	}
	p.objects = objects
	var empty []string
	if len(objects) == 0 {
		empty = []string{"the watched files hold no object that mcpgate reads (" + file.ReadsWhat + ")"}
	}
	p.report(problems, notServed, src.Warnings, src.Kept, warnings, empty)
	gateways := out.GatewayKeys()
	p.log.Info("configuration served", "version", p.srv.Version(), "gateways", gateways, "problems", nproblems, "took", time.Since(start).Round(time.Microsecond))
	p.ready.Store(true)
	if p.envoys != nil {
		p.envoys.Sync(gateways)
	}
	return nil
}

// judgeEdit compares a reload's refusals (problems, described with the files of src) with the
// served configuration's (served). It returns the reload's refusals, those among them that are
// new, and the files to hold back (sorted): the changed files whose own objects are refused
// anew, else, when a served file that did not change is (a Gateway or backend renamed under its
// routes, a new file's Gateway taking a served Gateway's port), every changed and every new
// file. A new file's own refusals hold nothing back. On a first reload every file is new: none
// is served, so nothing is held back.
func judgeEdit(served map[string]bool, problems []translator.FieldError, src file.Sources) (refusals map[string]bool, added, hold []string) {
	refusals = make(map[string]bool, len(problems))
	held := map[string]bool{}
	causedElsewhere := false
	for _, fe := range problems {
		m := src.Describe(fe)
		refusals[m] = true
		if served[m] {
			continue
		}
		added = append(added, m)
		loc, _ := src.Of(fe.Object())
		switch {
		case slices.Contains(src.Changed, loc.File):
			held[loc.File] = true
		case loc.File != "" && !slices.Contains(src.Added, loc.File):
			causedElsewhere = true
		}
	}
	if len(held) == 0 && causedElsewhere {
		return refusals, added, slices.Sorted(slices.Values(append(slices.Clone(src.Changed), src.Added...)))
	}
	return refusals, added, slices.Sorted(maps.Keys(held))
}

// report logs what is new since the last call: the problems (refused), what an edit would have
// refused (not served), the skipped documents, the files kept at their last good version, the
// translator's warnings (what is accepted but not applied as written) and other notes; and the
// problems and warnings that are gone (resolved).
func (p *pipeline) report(problems, notServed, skipped, kept, warnings, notes []string) {
	now := map[string]reportedNote{}
	add := func(msgs []string, level slog.Level, prefix string, resolves bool) {
		for _, m := range msgs {
			key := prefix + m
			now[key] = reportedNote{m, resolves}
			if _, ok := p.reported[key]; !ok {
				p.log.Log(context.Background(), level, key)
			}
		}
	}
	add(problems, slog.LevelWarn, "refused: ", true)
	add(notServed, slog.LevelWarn, "not served: ", true)
	add(skipped, slog.LevelInfo, "skipped: ", false)
	add(kept, slog.LevelWarn, "kept: ", false)
	add(warnings, slog.LevelWarn, "not applied as written: ", true)
	add(notes, slog.LevelWarn, "", false)
	// A problem gone while its file has another (a refused rule whose file no longer loads) is
	// not resolved.
	troubled := map[string]bool{}
	for _, n := range now {
		troubled[noteFile(n.msg)] = true
	}
	for key, n := range p.reported {
		if _, ok := now[key]; !ok && n.resolves {
			f := noteFile(n.msg)
			if f != "" && troubled[f] {
				p.log.Info("no longer reported, " + f + " has another problem: " + n.msg)
				continue
			}
			if _, err := os.Stat(f); f != "" && errors.Is(err, fs.ErrNotExist) {
				// nothing of it is served: it went with its file
				p.log.Info("no longer reported, " + f + " was removed: " + n.msg)
				continue
			}
			p.log.Info(ResolvedPrefix + n.msg)
		}
	}
	p.reported = now
}

// ResolvedPrefix starts the log line of a problem that is gone: what was refused is served.
const ResolvedPrefix = "resolved, now served; the refusal was: "

// noteFile returns the file a note of report names first ("FILE: ..."), or "".
func noteFile(msg string) string {
	f, _, ok := strings.Cut(msg, ": ")
	if !ok || !strings.ContainsRune(f, os.PathSeparator) {
		return ""
	}
	return f
}

// reportedNote is one logged line of report: its message, and whether its going is logged.
type reportedNote struct {
	msg      string
	resolves bool
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
