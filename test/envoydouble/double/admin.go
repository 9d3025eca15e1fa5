package double

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// adminHandler serves the admin endpoints that tests and scripts use on Envoy, and the
// Prometheus scrape of its statistics.
func (d *Double) adminHandler() http.Handler {
	mux := http.NewServeMux()
	// /ready: 200 "LIVE" once initialized, 503 "PRE_INITIALIZING" before (Envoy's admin).
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if d.Live() {
			fmt.Fprintln(w, "LIVE")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "PRE_INITIALIZING")
	})
	mux.HandleFunc("/server_info", func(w http.ResponseWriter, _ *http.Request) {
		state := "PRE_INITIALIZING"
		if d.Live() {
			state = "LIVE"
		}
		node, _ := protojson.Marshal(d.boot.Node)
		writeJSON(w, map[string]any{"version": "envoydouble", "state": state, "node": json.RawMessage(node)})
	})
	mux.HandleFunc("/config_dump", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, d.configDump()) })
	// /listeners: one "name::address" line per bound listener, as Envoy prints it.
	mux.HandleFunc("/listeners", func(w http.ResponseWriter, _ *http.Request) {
		l := d.Listening()
		names := make([]string, 0, len(l))
		for n := range l {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(w, "%s::%s\n", n, l[n])
		}
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		live := 0
		if d.Live() {
			live = 1
		}
		snap := d.Snapshot()
		fmt.Fprintf(w, "server.live: %d\nserver.total_connections: %d\nlistener_manager.total_listeners_active: %d\ncluster_manager.active_clusters: %d\n",
			live, d.dp.TotalConnections(), len(d.Listening()), len(snap.Clusters))
	})
	// /stats/prometheus: the statistics the double keeps (dataplane.Stats), as Envoy writes
	// them in the Prometheus text format 0.0.4.
	mux.HandleFunc("/stats/prometheus", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		d.dp.WritePrometheus(w, adminStatPrefix)
	})
	// /drain_listeners (POST; ?graceful): Envoy's drain before a shutdown (dataplane.Drain), over
	// --drain-time-s. inboundonly (listeners by traffic_direction) is not reproduced: refused.
	mux.HandleFunc("/drain_listeners", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "method not allowed: use POST", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		if q.Has("inboundonly") {
			http.Error(w, "envoydouble: drain_listeners?inboundonly is not reproduced", http.StatusBadRequest)
			return
		}
		d.dp.Drain(q.Has("graceful"), d.drainTime)
		fmt.Fprintln(w, "OK")
	})
	mux.HandleFunc("/quitquitquit", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "method not allowed: use POST", http.StatusMethodNotAllowed)
			return
		}
		fmt.Fprintln(w, "OK")
		d.quitOnce.Do(func() { close(d.quit) })
	})
	// The admin listener is a connection manager of its own, its statistics http.admin.*.
	return d.dp.Stats().Count(adminStatPrefix, mux)
}

// adminStatPrefix is the stat_prefix of Envoy's admin connection manager.
const adminStatPrefix = "admin"

// configDump is a minimal /config_dump: the accepted dynamic resources in Envoy's dump shapes.
func (d *Double) configDump() map[string]any {
	snap := d.Snapshot()
	dump := func(typeURL, dumpType, listKey, itemKey string) map[string]any {
		names := make([]string, 0, len(snap.Raw[typeURL]))
		for n := range snap.Raw[typeURL] {
			names = append(names, n)
		}
		sort.Strings(names)
		items := []map[string]any{}
		for _, n := range names {
			b, err := protojson.Marshal(snap.Raw[typeURL][n])
			if err != nil {
				continue
			}
			items = append(items, map[string]any{"name": n, itemKey: json.RawMessage(b)})
		}
		return map[string]any{"@type": dumpType, listKey: items}
	}
	return map[string]any{"configs": []any{
		dump(xdsconf.ClusterType, "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters", "cluster"),
		dump(xdsconf.EndpointType, "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump", "dynamic_endpoint_configs", "endpoint_config"),
		dump(xdsconf.ListenerType, "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners", "listener"),
		dump(xdsconf.RouteType, "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs", "route_config"),
	}}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
