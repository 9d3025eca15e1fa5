package kubernetes

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/translator"
)

// syncClassFinalizers keeps Gateway API's finalizer gateway-exists-finalizer.gateway.networking.k8s.io
// (gwv1.GatewayClassFinalizerGatewaysExist) on each GatewayClass of the controller's
// controllerName while one or more Gateways of the class exist, so that a class in use is not
// deleted, and removes it when none does (a class being deleted then goes). Classes of another
// controllerName, served by name (Options.GatewayClasses) or not, are never touched. Gateways
// being deleted still count; with Options.Namespaces only the Gateways of those namespaces are
// seen. A class whose finalizer is as it should be costs no request.
//
// Each change is a JSON patch that first tests the class's resourceVersion, so it never
// overwrites a change it did not see (another controller's finalizer added or removed meanwhile):
// the API server refuses a stale patch (422) and the pass is run again on the cache once it has
// caught up. The class in res is updated from the API server's answer, so that the status
// written after it (writeStatus) does not conflict.
func (p *Provider) syncClassFinalizers(ctx context.Context, res *translator.Resources) {
	used := make(map[string]bool, len(res.Gateways))
	for _, g := range res.Gateways {
		used[string(g.Spec.GatewayClassName)] = true
	}
	for _, c := range res.GatewayClasses {
		if string(c.Spec.ControllerName) != p.opts.ControllerName {
			continue
		}
		i := slices.Index(c.Finalizers, gwv1.GatewayClassFinalizerGatewaysExist)
		var op map[string]any
		switch {
		case used[c.Name] && i < 0 && c.DeletionTimestamp == nil:
			// (the API server refuses a new finalizer on an object being deleted)
			if len(c.Finalizers) == 0 {
				op = map[string]any{"op": "add", "path": "/metadata/finalizers", "value": []string{gwv1.GatewayClassFinalizerGatewaysExist}}
			} else {
				op = map[string]any{"op": "add", "path": "/metadata/finalizers/-", "value": gwv1.GatewayClassFinalizerGatewaysExist}
			}
		case !used[c.Name] && i >= 0:
			op = map[string]any{"op": "remove", "path": "/metadata/finalizers/" + strconv.Itoa(i)}
		default:
			continue
		}
		p.patchClass(ctx, c, op)
	}
}

// patchClass applies op to class c after a test of its resourceVersion, as the controller's field
// manager, and updates c with the API server's answer.
func (p *Provider) patchClass(ctx context.Context, c *gwv1.GatewayClass, op map[string]any) {
	patch, err := json.Marshal([]map[string]any{
		{"op": "test", "path": "/metadata/resourceVersion", "value": c.ResourceVersion},
		op,
	})
	if err != nil {
		p.log.Error("GatewayClass finalizer patch", "object", c.Name, "error", err)
		return
	}
	err = p.client.Patch(ctx, c, client.RawPatch(types.JSONPatchType, patch), client.FieldOwner(statusManager(p.opts.ControllerName)))
	switch {
	case err == nil:
		c.SetManagedFields(nil) // as the cache holds it (stripManagedFields)
		p.log.Debug("GatewayClass finalizer written", "object", c.Name, "finalizers", c.Finalizers)
	case apierrors.IsNotFound(err):
	case apierrors.IsInvalid(err) || apierrors.IsConflict(err):
		// The class changed since the cache read it (the resourceVersion test failed): the next
		// pass decides again on the class as it is now.
		p.log.Debug("GatewayClass finalizer: the class changed, trying again", "object", c.Name, "error", err)
		p.trigger()
	default:
		p.log.Error("write GatewayClass finalizer", "object", c.Name, "field", "metadata.finalizers",
			"finalizer", gwv1.GatewayClassFinalizerGatewaysExist, "error", err)
	}
}
