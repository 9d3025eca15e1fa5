package kubernetes

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/translator"
)

// configMapRefs lists the ConfigMaps the translation of res may read: those the client
// certificate validations (spec.tls.frontend: the default and each perPort entry,
// caCertificateRefs of group "" and kind ConfigMap) of the Gateways served (opts: their classes)
// name, one in another namespace only where a ReferenceGrant of res permits it (the translator
// refuses the others without reading them: a Gateway cannot make the controller read any
// ConfigMap of the cluster), and those the BackendTLSPolicies' validation.caCertificateRefs name
// (of group "" and kind ConfigMap, in the policy's own namespace: the refs are local).
func configMapRefs(res *translator.Resources, opts translator.Options) []objectRef {
	var refs []objectRef
	for _, p := range res.BackendTLSPolicies {
		for i, ref := range p.Spec.Validation.CACertificateRefs {
			if ref.Group != "" || ref.Kind != "ConfigMap" {
				continue // not a ConfigMap: the translator refuses it
			}
			refs = append(refs, objectRef{types.NamespacedName{Namespace: p.Namespace, Name: string(ref.Name)},
				translator.KindBackendTLSPolicy + " " + p.Namespace + "/" + p.Name, fmt.Sprintf("spec.validation.caCertificateRefs[%d]", i)})
		}
	}
	for _, g := range servedGateways(res, opts) {
		if g.Spec.TLS == nil || g.Spec.TLS.Frontend == nil {
			continue
		}
		f := g.Spec.TLS.Frontend
		add := func(v *gwv1.FrontendTLSValidation, field string) {
			if v == nil {
				return
			}
			for i, ref := range v.CACertificateRefs {
				if ref.Group != "" || ref.Kind != "ConfigMap" {
					continue // not a ConfigMap: the translator refuses it
				}
				if r, ok := gatewayRef(res, g, ref.Namespace, "ConfigMap", string(ref.Name), fmt.Sprintf("%s.caCertificateRefs[%d]", field, i)); ok {
					refs = append(refs, r)
				}
			}
		}
		add(f.Default.Validation, "spec.tls.frontend.default.validation")
		for i := range f.PerPort {
			add(f.PerPort[i].TLS.Validation, fmt.Sprintf("spec.tls.frontend.perPort[%d].tls.validation", i))
		}
	}
	return refs
}

// configMapWatches are the watches of the ConfigMaps the last pass read (configMapRefs), by
// ConfigMap, each stopped by its cancel function. Used by the loop's goroutine only.
type configMapWatches map[types.NamespacedName]context.CancelFunc

// watchConfigMaps watches each ConfigMap of refs by name (a list and watch of its namespace's
// ConfigMaps with the field selector metadata.name=NAME) and stops watching the ConfigMaps no
// longer named: a ConfigMap made, changed or deleted causes a pass, as a change of a watched kind
// does, so that a rotated client CA is served at once, while the controller holds no ConfigMap
// but those (its cache's are the data planes' own, by label). A new watch's first list causes a
// pass too, which finds what changed between the pass's read and the watch's start. The watches
// end with ctx.
func (p *Provider) watchConfigMaps(ctx context.Context, refs []objectRef) {
	want := map[types.NamespacedName]bool{}
	for _, r := range refs {
		want[r.key] = true
	}
	for key, stop := range p.cmWatches {
		if !want[key] {
			stop()
			delete(p.cmWatches, key)
		}
	}
	for key := range want {
		if _, ok := p.cmWatches[key]; ok {
			continue
		}
		lw := toolscache.NewListWatchFromClient(p.core, "configmaps", key.Namespace, fields.OneTermEqualSelector("metadata.name", key.Name))
		inf := toolscache.NewSharedInformer(lw, &corev1.ConfigMap{}, 0)
		changed := func(event string) func(obj any) {
			return func(obj any) { p.changed("ConfigMap", event, obj) }
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    changed("add"),
			UpdateFunc: func(_, cur any) { changed("update")(cur) },
			DeleteFunc: changed("delete"),
		}); err != nil {
			p.log.Error("watch ConfigMap: its changes are seen by the periodic pass", "configmap", key.String(), "error", err)
			continue
		}
		wctx, stop := context.WithCancel(ctx)
		p.cmWatches[key] = stop
		go inf.RunWithContext(wctx)
	}
}
