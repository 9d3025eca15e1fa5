// Package kubernetes is mcpgate's Kubernetes provider: it watches Gateway API objects (with
// ReferenceGrants and BackendTLSPolicies), AgentgatewayBackends, both policy kinds, Services, EndpointSlices and
// Namespaces through client-go informers (controller-runtime's cache), translates them with package translator after
// a short debounce, publishes the result to the xDS server, and writes status back.
//
// Every replica watches and serves xDS; with leader election only the replica holding the Lease
// writes status and creates the per-Gateway data plane (see DataPlane), so replicas never fight
// over an object.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/api/v1alpha1/enterprise"
	"github.com/mcpgate/mcpgate/translator"
)

// Defaults of Options.
const (
	DefaultDebounce         = 100 * time.Millisecond
	DefaultResyncPeriod     = time.Minute
	DefaultLeaderElectionID = "mcpgate-controller"
	DefaultLeaseDuration    = 15 * time.Second
)

// Publisher receives the translated configuration: node group -> type URL -> resources. The xds
// server implements it.
type Publisher interface {
	Update(groups map[string]map[string][]proto.Message) error
}

// Options configure a Provider.
type Options struct {
	// ControllerName is the GatewayClass controllerName served (default
	// translator.DefaultControllerName).
	ControllerName string
	// GatewayClasses are further GatewayClass names served whatever their controllerName, e.g.
	// enterprise-agentgateway so that manifests written for that class are picked up.
	GatewayClasses []string
	// Namespaces limits the namespaced objects watched to these namespaces; empty watches all.
	Namespaces []string
	// Translator tunes the translation; its ControllerName, GatewayClassNames and
	// RequireGatewayClass are set from the fields above.
	Translator translator.Options
	// Publisher receives every translation. Required.
	Publisher Publisher
	// Logger receives the provider's logs (default: discarded).
	Logger *slog.Logger
	// LeaderElection makes the replicas elect one (a Lease) that writes status and data planes.
	// Without it this process writes them.
	LeaderElection bool
	// LeaderElectionNamespace holds the Lease (required with LeaderElection outside a pod).
	LeaderElectionNamespace string
	// LeaderElectionID names the Lease (default DefaultLeaderElectionID).
	LeaderElectionID string
	// LeaseDuration is how long a Lease holder that stopped renewing keeps it (default 15 s);
	// the renew deadline and retry period are derived from it.
	LeaseDuration time.Duration
	// Debounce is how long changes gather before a translation (default 100 ms).
	Debounce time.Duration
	// ResyncPeriod is the interval of full translations without a change (default 1 min): it
	// picks up rotated Secrets, which are read by name and not watched, reads the data planes'
	// Secrets and PodDisruptionBudgets again (a change's pass uses them as a pass found them),
	// and rewrites status that someone else changed.
	ResyncPeriod time.Duration
	// DataPlane, when set, makes the controller create each served Gateway's Envoy
	// Deployment, Service and bootstrap ConfigMap. Nil leaves the data plane to the user.
	DataPlane *DataPlane
	// Registerer, when set, gets the provider's metrics: mcpgate_config_problems (refusals in
	// the last translation, as `mcpgate run` exports it) and mcpgate_kubernetes_leader.
	Registerer prometheus.Registerer
}

// Provider watches the cluster and keeps the Publisher and the objects' status up to date.
type Provider struct {
	opts   Options
	tr     translator.Options
	log    *slog.Logger
	mgr    manager.Manager
	client client.Client
	// reader reads from the API server directly: Secrets (never cached) and objects the
	// label-filtered caches cannot see.
	reader client.Reader
	kick   chan struct{}
	ready  atomic.Bool
	// synced is set once the cache holds the cluster's objects (before the first translation):
	// until then every change counts (serviceMatters, namespaceMatters)
	synced atomic.Bool
	// absent are the optional kinds the API server does not serve (watch), which count as
	// empty; written before the loop starts
	absent map[string]bool
	// services are the Services of the last translation's input and whether it may read their
	// EndpointSlices (endpointServices); nil before the first
	services atomic.Pointer[map[string]bool]
	// problems are the refusals of the last translation, to log each new one once.
	problems map[string]bool
	// secrets and configMaps read the Secrets and ConfigMaps the input names, by name
	// (snapshot); used by the loop's goroutine only
	secrets    referenced[*corev1.Secret]
	configMaps referenced[*corev1.ConfigMap]
	// cmWatches are the watches of the referenced ConfigMaps (watchConfigMaps), which core
	// (the core API group's REST client) makes
	cmWatches configMapWatches
	core      rest.Interface
	// remembered are the data plane Secrets and PodDisruptionBudgets passes found current, until
	// the next full pass (readRemembered); used by the loop's goroutine only
	remembered map[rememberedKey]rememberedObject
	// problemsGauge and leaderGauge are exported when Options.Registerer is set.
	problemsGauge, leaderGauge prometheus.Gauge
}

// NewScheme returns a scheme with every kind the provider reads or writes.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, gwv1.Install, v1alpha1.AddToScheme, enterprise.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("build scheme: %w", err)
		}
	}
	return s, nil
}

// New returns a provider for the cluster of cfg (unthrottled on the client side when cfg sets no
// QPS). Run starts it.
func New(cfg *rest.Config, opts Options) (*Provider, error) {
	if opts.Publisher == nil {
		return nil, errors.New("kubernetes provider: a Publisher is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ControllerName == "" {
		opts.ControllerName = translator.DefaultControllerName
	}
	if opts.LeaderElectionID == "" {
		opts.LeaderElectionID = DefaultLeaderElectionID
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = DefaultLeaseDuration
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.ResyncPeriod <= 0 {
		opts.ResyncPeriod = DefaultResyncPeriod
	}
	if dp := opts.DataPlane; dp != nil {
		if dp.ExtProcImage == "" || dp.XDSAddress == "" {
			return nil, errors.New("kubernetes provider: DataPlane needs ExtProcImage and XDSAddress")
		}
		d := dp.withDefaults()
		opts.DataPlane = &d
	}
	tr := opts.Translator
	tr.ControllerName = opts.ControllerName
	tr.GatewayClassNames = slices.Clone(opts.GatewayClasses)
	if tr.Cache == nil {
		tr.Cache = translator.NewCache() // every translation of this provider reuses unchanged checks
	}
	tr.RequireGatewayClass = true

	if cfg.QPS == 0 {
		// client-go's default pace (5 requests a second, bursts of 10) held a pass of 30
		// Gateways' status writes, data planes and Secret reads for half a minute, and every
		// publish after it: as controller-runtime's GetConfig, the controller leaves the pace to
		// the API server's priority and fairness.
		cfg = rest.CopyConfig(cfg)
		cfg.QPS = -1
	}
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	log := opts.Logger.With("component", "kubernetes")
	managed := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedByValue})
	cacheOpts := cache.Options{
		DefaultTransform: stripManagedFields,
		// Of Deployments and ConfigMaps only the data plane objects the controller made.
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.Deployment{}: {Label: managed},
			&corev1.ConfigMap{}:  {Label: managed},
		},
	}
	if len(opts.Namespaces) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range opts.Namespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	renew := opts.LeaseDuration * 2 / 3
	retry := opts.LeaseDuration / 7
	mgr, err := manager.New(cfg, manager.Options{
		Scheme:                        scheme,
		Logger:                        logr.FromSlogHandler(log.Handler()),
		Cache:                         cacheOpts,
		Client:                        client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              opts.LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &opts.LeaseDuration,
		RenewDeadline:                 &renew,
		RetryPeriod:                   &retry,
	})
	if err != nil {
		return nil, fmt.Errorf("kubernetes provider: %w", err)
	}
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes provider: %w", err)
	}
	p := &Provider{
		opts:       opts,
		tr:         tr,
		log:        log,
		mgr:        mgr,
		client:     mgr.GetClient(),
		reader:     mgr.GetAPIReader(),
		kick:       make(chan struct{}, 1),
		absent:     map[string]bool{},
		problems:   map[string]bool{},
		remembered: map[rememberedKey]rememberedObject{},
		secrets:    newReferenced("Secret", func() *corev1.Secret { return &corev1.Secret{} }),
		configMaps: newReferenced("ConfigMap", func() *corev1.ConfigMap { return &corev1.ConfigMap{} }),
		cmWatches:  configMapWatches{},
		core:       core.RESTClient(),
		problemsGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcpgate_config_problems", Help: "Objects or fields refused in the last translation (their status says why).",
		}),
		leaderGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcpgate_kubernetes_leader", Help: "1 when this replica holds the Lease and writes status and data planes.",
		}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{p.problemsGauge, p.leaderGauge} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("kubernetes provider: metrics: %w", err)
			}
		}
	}
	if err := mgr.Add(everyReplica(p.loop)); err != nil {
		return nil, fmt.Errorf("kubernetes provider: %w", err)
	}
	return p, nil
}

// stripManagedFields is the cache's transform: it drops the managedFields of every object but the
// data plane objects the controller made (labelled as such), which applyIfChanged compares with
// what it would apply, and Gateways, whose status mcpgate clears when it stops serving them
// (withoutOwnStatus).
func stripManagedFields(in any) (any, error) {
	if _, ok := in.(*gwv1.Gateway); ok {
		return in, nil
	}
	if obj, err := meta.Accessor(in); err == nil && obj.GetManagedFields() != nil && obj.GetLabels()[LabelManagedBy] != ManagedByValue {
		obj.SetManagedFields(nil)
	}
	return in, nil
}

// Run watches the cluster until ctx ends. With leader election it returns an error when this
// replica loses the Lease: the process should exit then, and its restart rejoins the election.
func (p *Provider) Run(ctx context.Context) error {
	if err := p.mgr.Start(ctx); err != nil {
		return fmt.Errorf("kubernetes provider: %w", err)
	}
	return nil
}

// Ready reports whether the first translation of the synced cluster has been published.
func (p *Provider) Ready() bool { return p.ready.Load() }

// IsLeader reports whether this replica writes status and data planes (always true without
// leader election, once started).
func (p *Provider) IsLeader() bool {
	select {
	case <-p.mgr.Elected():
		return true
	default:
		return false
	}
}

// everyReplica is a manager runnable that runs on every replica, not only the leader.
type everyReplica func(context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (f everyReplica) NeedLeaderElection() bool        { return false }

// watchedKind is a kind whose changes cause a translation. statusOwned kinds get status from
// the controller: an update that changes only their status is ignored, so that writing status
// does not cause another translation.
type watchedKind struct {
	obj         client.Object
	statusOwned bool
	// optional: a kind whose CRD may be missing (watch leaves it out, and it counts as empty)
	optional bool
	// matters, when set, tells whether a change of the object can change the translation; a
	// change that cannot causes none
	matters func(obj any) bool
	// changed, when set, tells the same of an update (old to cur), instead of matters
	changed func(old, cur any) bool
}

func (p *Provider) watchedKinds() []watchedKind {
	kinds := []watchedKind{
		{obj: &gwv1.GatewayClass{}, statusOwned: true},
		{obj: &gwv1.Gateway{}, statusOwned: true},
		{obj: &gwv1.HTTPRoute{}, statusOwned: true},
		// ReferenceGrant is v1 from Gateway API v1.5 on; without it no cross-namespace
		// reference is granted. EnterpriseAgentgatewayPolicy is Solo.io's kind, which a
		// cluster may lack.
		{obj: &gwv1.ReferenceGrant{}, optional: true},
		// BackendTLSPolicy is v1 (standard channel) from Gateway API v1.4 on; without its CRD
		// no Service is reached over TLS by policy.
		{obj: &gwv1.BackendTLSPolicy{}, statusOwned: true, optional: true},
		{obj: &v1alpha1.AgentgatewayBackend{}, statusOwned: true},
		{obj: &v1alpha1.AgentgatewayPolicy{}, statusOwned: true},
		{obj: &enterprise.EnterpriseAgentgatewayPolicy{}, statusOwned: true, optional: true},
		{obj: &corev1.Service{}, matters: p.serviceMatters},
		{obj: &discoveryv1.EndpointSlice{}, matters: p.sliceMatters},
		{obj: &corev1.Namespace{}, matters: p.namespaceMatters, changed: p.namespaceChangeMatters},
	}
	if p.opts.DataPlane != nil {
		kinds = append(kinds, watchedKind{obj: &appsv1.Deployment{}}, watchedKind{obj: &corev1.ConfigMap{}})
	}
	return kinds
}

// watch registers a change handler on the informer of every watched kind, after its cache
// indexes (indexes: the kinds that have some come before those whose handlers read them). A kind
// whose CRD is not installed is an error that names it, unless it is optional: it is then left
// out (absent) with a warning, until a restart finds it.
func (p *Provider) watch(ctx context.Context) error {
	for _, k := range p.watchedKinds() {
		gvk, err := p.client.GroupVersionKindFor(k.obj)
		if err != nil {
			return fmt.Errorf("kind %T: %w", k.obj, err)
		}
		// Not blocking: every informer starts at once; loop waits for all of them to sync.
		inf, err := p.mgr.GetCache().GetInformer(ctx, k.obj, cache.BlockUntilSynced(false))
		if err != nil {
			switch {
			case meta.IsNoMatchError(err) && k.optional:
				p.log.Warn("kind not served by the API server: left out (none of its objects apply); install its CRD and restart the controller to use it",
					"kind", gvk.Kind, "apiVersion", gvk.GroupVersion().String())
				p.absent[gvk.Kind] = true
				continue
			case meta.IsNoMatchError(err):
				return fmt.Errorf("%s (%s) is not served by the API server: install its CRD (Gateway API standard channel v1.5 or later, deploy/crds): %w", gvk.Kind, gvk.GroupVersion(), err)
			}
			return fmt.Errorf("watch %s: %w", gvk.Kind, err)
		}
		for name, fn := range p.indexes(k.obj) {
			if err := p.mgr.GetFieldIndexer().IndexField(ctx, k.obj, name, fn); err != nil {
				return fmt.Errorf("index %s by %s: %w", gvk.Kind, name, err)
			}
		}
		kind, statusOwned, matters, changed := gvk.Kind, k.statusOwned, k.matters, k.changed
		if matters == nil {
			matters = func(any) bool { return true }
		}
		if changed == nil {
			changed = func(old, cur any) bool { return matters(old) || matters(cur) }
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) {
				if matters(obj) {
					p.changed(kind, "add", obj)
				}
			},
			UpdateFunc: func(old, cur any) {
				if statusOwned && !specChanged(old, cur) || !changed(old, cur) {
					return
				}
				p.changed(kind, "update", cur)
			},
			DeleteFunc: func(obj any) {
				if matters(obj) {
					p.changed(kind, "delete", obj)
				}
			},
		}); err != nil {
			return fmt.Errorf("watch %s: %w", gvk.Kind, err)
		}
	}
	return nil
}

// sliceMatters reports whether a change of an EndpointSlice can change the translation: its
// Service is one the last translation's input could read endpoints of (endpointServices), or
// one it did not hold (a Service made since, which a translation may find). Any cluster's pods
// change their slices all the time; those of other Services cause no translation.
func (p *Provider) sliceMatters(obj any) bool {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return true // a deletion seen late (DeletedFinalStateUnknown): not known to be harmless
	}
	svc := es.Labels[discoveryv1.LabelServiceName]
	if svc == "" {
		return false // no Service's: the translator matches slices to Services by that label
	}
	services := p.services.Load()
	if services == nil {
		return true
	}
	used, known := (*services)[es.Namespace+"/"+svc]
	return used || !known
}

// changed asks for a translation for a change (event: add, update or delete) of obj, of kind
// kind, and logs it at debug level.
func (p *Provider) changed(kind, event string, obj any) {
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		key, _ := toolscache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		p.log.Debug("change", "kind", kind, "event", event, "object", key)
	}
	p.trigger()
}

// endpointServices returns every Service of res ("NS/NAME") and whether a translation of res may
// read its EndpointSlices, as a superset of what the translator reads: the Services HTTPRoute
// backendRefs name, those an MCP target's static host names (Options.ServiceOfHost), and those
// with a port of an MCP appProtocol, which selector targets find.
func endpointServices(res *translator.Resources, opts translator.Options) map[string]bool {
	out := make(map[string]bool, len(res.Services))
	for _, s := range res.Services {
		used := false
		for i := range s.Spec.Ports {
			used = used || translator.IsMCPPort(&s.Spec.Ports[i])
		}
		out[s.Namespace+"/"+s.Name] = used
	}
	use := func(ref string) {
		if _, ok := out[ref]; ok {
			out[ref] = true
		}
	}
	for _, r := range res.HTTPRoutes {
		for _, ref := range routeServiceRefs(r) {
			use(ref)
		}
	}
	for _, b := range res.Backends {
		for _, ref := range backendServiceRefs(b, opts) {
			use(ref)
		}
	}
	return out
}

// specChanged reports whether an update changed more than the status: the generation (spec),
// labels, annotations or deletion.
func specChanged(old, cur any) bool {
	o, ok1 := old.(metav1.Object)
	c, ok2 := cur.(metav1.Object)
	if !ok1 || !ok2 {
		return true
	}
	return o.GetGeneration() != c.GetGeneration() ||
		!maps.Equal(o.GetLabels(), c.GetLabels()) ||
		!maps.Equal(o.GetAnnotations(), c.GetAnnotations()) ||
		(o.GetDeletionTimestamp() == nil) != (c.GetDeletionTimestamp() == nil)
}

// trigger asks for a translation; triggers during the debounce are folded into one.
func (p *Provider) trigger() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// loop translates after each debounced change, every ResyncPeriod, and when this replica is
// elected leader.
func (p *Provider) loop(ctx context.Context) error {
	if err := p.watch(ctx); err != nil {
		return err
	}
	if !p.mgr.GetCache().WaitForCacheSync(ctx) {
		return ctx.Err()
	}
	p.synced.Store(true)
	p.log.Info("cluster objects synced", "controller", p.opts.ControllerName, "gatewayClasses", p.opts.GatewayClasses)
	resync := time.NewTicker(p.opts.ResyncPeriod)
	defer resync.Stop()
	elected := p.mgr.Elected()
	var debounce <-chan time.Time
	p.sync(ctx, true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
			if debounce == nil {
				debounce = time.After(p.opts.Debounce)
			}
		case <-debounce:
			debounce = nil
			p.sync(ctx, false)
		case <-resync.C:
			p.sync(ctx, true)
		case <-elected:
			elected = nil
			p.log.Info("elected leader: writing status and data planes")
			p.sync(ctx, true)
		}
	}
}

// sync translates the cached objects, publishes the result and, on the leader, writes the
// data planes, the GatewayClasses' finalizer (syncClassFinalizers) and status. A full pass (the
// first, the periodic one, the one on election) reads every data plane Secret and
// PodDisruptionBudget from the API server; a change's pass reads those that no pass found
// current since (readRemembered).
func (p *Provider) sync(ctx context.Context, full bool) {
	snap, err := p.snapshot(ctx)
	if err != nil {
		p.log.Error("read cluster objects", "error", err)
		return
	}
	services := endpointServices(snap.resources, p.tr)
	p.services.Store(&services)
	out := translator.Translate(snap.resources, p.tr)
	if err := p.opts.Publisher.Update(out.NodeGroups()); err != nil {
		p.log.Error("publish xDS", "error", err)
	}
	p.ready.Store(true)
	problems := out.Status.Problems()
	p.problemsGauge.Set(float64(len(problems)))
	p.logProblems(problems)
	if !p.IsLeader() {
		return
	}
	p.leaderGauge.Set(1)
	var planes map[gatewayKey]dataPlaneState
	if p.opts.DataPlane != nil {
		if full {
			p.forgetRemembered(true, nil)
		}
		planes = p.reconcileDataPlanes(ctx, snap, out)
	}
	p.syncClassFinalizers(ctx, snap.resources)
	p.writeStatus(ctx, snap, out, planes)
}

// logProblems logs each refusal once, when it first appears.
func (p *Provider) logProblems(problems []translator.FieldError) {
	cur := make(map[string]bool, len(problems))
	for _, e := range problems {
		msg := e.Error()
		cur[msg] = true
		if !p.problems[msg] {
			p.log.Warn("object refused", "object", e.Object().String(), "field", e.Field, "error", e.Message)
		}
	}
	p.problems = cur
}
