package xds

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// debugDump is the JSON document DebugHandler serves.
type debugDump struct {
	// Version is the version of the last push.
	Version string `json:"version"`
	// Groups is node group -> its snapshot.
	Groups map[string]debugGroup `json:"groups"`
}

type debugGroup struct {
	// Version is the version of the group's snapshot (see Snapshot.Version).
	Version string `json:"version"`
	// Resources is type URL -> the resources, sorted by name, as protojson.
	Resources map[string][]json.RawMessage `json:"resources"`
}

// DebugHandler serves the current snapshot of every node group as JSON: {"version", "groups":
// {GROUP: {"version", "resources": {TYPE_URL: [resource...]}}}}. The query parameter group=NAME
// limits it to one group (404 when the group does not exist). A resource that cannot be shown as
// JSON (an Any of a type this binary does not link) appears as {"name", "error"}.
//
// Every resource is shown as redact returns it: the served resources may hold secrets (an LLM
// backend's API key in a route's headers), and the dump is served on an admin port. redact
// must not change its argument. Without one (nil) the handler shows nothing: it answers 500.
func (s *Server) DebugHandler(redact func(proto.Message) proto.Message) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if redact == nil {
			http.Error(w, "no redaction configured: the resources may hold secrets", http.StatusInternalServerError)
			return
		}
		s.mu.RLock()
		dump := debugDump{Version: strconv.FormatUint(s.counter, 10), Groups: map[string]debugGroup{}}
		groups := maps.Clone(s.groups)
		s.mu.RUnlock()
		if g := r.URL.Query().Get("group"); g != "" {
			snap, ok := groups[g]
			if !ok {
				http.Error(w, "no node group "+g, http.StatusNotFound)
				return
			}
			groups = map[string]*Snapshot{g: snap}
		}
		for name, snap := range groups {
			dump.Groups[name] = dumpSnapshot(snap, redact)
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(dump); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
}

func dumpSnapshot(snap *Snapshot, redact func(proto.Message) proto.Message) debugGroup {
	g := debugGroup{Version: snap.Version(), Resources: map[string][]json.RawMessage{}}
	for _, typeURL := range snap.TypeURLs() {
		res := snap.GetResources(typeURL)
		out := make([]json.RawMessage, 0, len(res))
		for _, name := range slices.Sorted(maps.Keys(res)) {
			b, err := protojson.Marshal(redact(res[name]))
			if err != nil {
				b, _ = json.Marshal(map[string]string{"name": name, "error": err.Error()})
			}
			out = append(out, b)
		}
		g.Resources[typeURL] = out
	}
	return g
}
