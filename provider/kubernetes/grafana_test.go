package kubernetes_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestGrafanaDashboardMetrics checks that every metric the dashboards in deploy/grafana query is
// one that mcpgate's code defines (a "mcpgate_..." name in a non-test Go file).
func TestGrafanaDashboardMetrics(t *testing.T) {
	repo := testCluster.repo
	defined := map[string]bool{}
	literal := regexp.MustCompile(`"(mcpgate_[a-z0-9_]+)"`)
	err := filepath.WalkDir(repo, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dashboards, err := filepath.Glob(filepath.Join(repo, "deploy", "grafana", "*.json"))
	if err != nil || len(dashboards) == 0 {
		t.Fatalf("no dashboard in deploy/grafana (%v)", err)
	}
	used := regexp.MustCompile(`mcpgate_[a-z0-9_]+`)
	for _, path := range dashboards {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			Title  string `json:"title"`
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		seen := map[string]bool{}
		for _, p := range dash.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", path, p.Title)
			}
			for _, tg := range p.Targets {
				for _, m := range used.FindAllString(tg.Expr, -1) {
					name := m
					for _, suffix := range []string{"_bucket", "_sum", "_count"} {
						if n, ok := strings.CutSuffix(m, suffix); ok && defined[n] {
							name = n
						}
					}
					seen[name] = true
					if !defined[name] {
						t.Errorf("%s: panel %q queries %s, which no Go code defines", path, p.Title, m)
					}
				}
			}
		}
		for _, want := range []string{"mcpgate_mcp_requests_total", "mcpgate_mcp_request_duration_seconds", "mcpgate_authn_failures_total", "mcpgate_extproc_streams_active"} {
			if !seen[want] {
				t.Errorf("%s: no panel shows %s", path, want)
			}
		}
	}
}
