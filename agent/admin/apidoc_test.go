package admin

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// endpointHeading is how docs/api.md names an endpoint: ### `GET /path`.
var endpointHeading = regexp.MustCompile("(?m)^### `([A-Z]+) (/[^`]*)`$")

// TestAPIDocMatchesRoutes: docs/api.md describes every route the API
// registers (with a backend that has every optional part), and nothing
// else; the catch-all is the only route without a method.
func TestAPIDocMatchesRoutes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range endpointHeading.FindAllStringSubmatch(string(b), -1) {
		e := m[1] + " " + m[2]
		if documented[e] {
			t.Errorf("docs/api.md describes %s twice", e)
		}
		documented[e] = true
	}

	a, _ := newTestAPI(t)
	var registered []string
	for _, r := range a.mux.routes {
		if r.Method == "" {
			if r.Pattern != catchAll {
				t.Errorf("route %s takes every method: give it one, and describe it in docs/api.md", r.Pattern)
			}
			continue
		}
		registered = append(registered, r.Method+" "+r.Pattern)
	}
	for _, e := range registered {
		if !documented[e] {
			t.Errorf("%s is served but not described in docs/api.md (add a \"### `%s`\" section)", e, e)
		}
	}
	for e := range documented {
		if !slices.Contains(registered, e) {
			t.Errorf("docs/api.md describes %s, which the API does not serve", e)
		}
	}
	if len(registered) < 20 {
		t.Fatalf("only %d routes registered: %v", len(registered), registered)
	}
}
