package admin

import (
	"net/http"
	"path"
	"slices"
	"strings"
)

// route is one registered endpoint: "GET" and "/api/slots/{slot}/health".
// Method is empty for a pattern that matches every method.
type route struct {
	Method  string
	Pattern string
}

// router is the API's ServeMux that keeps the table of what was
// registered on it, so that the routes can be listed (docs/api.md is
// checked against them) and a wrong method told from an unknown path.
type router struct {
	*http.ServeMux
	routes []route
}

func newRouter() *router { return &router{ServeMux: http.NewServeMux()} }

// Handle registers h for pattern ("METHOD /path" or "/path") and records it.
func (r *router) Handle(pattern string, h http.Handler) {
	r.ServeMux.Handle(pattern, h)
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern
	}
	r.routes = append(r.routes, route{Method: method, Pattern: path})
}

// ServeHTTP refuses a path with ".", ".." or empty parts, which ServeMux
// would answer with a redirect to the cleaned path (a client following it
// sent to "/api/slots/a/../b/git-remote" got slot b's remote), so that a
// slot's name in a path is always the name withSlot checks.
func (r *router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if p := req.URL.Path; p == "" || path.Clean(p) != strings.TrimSuffix(p, "/") && p != "/" {
		writeError(w, http.StatusBadRequest, "invalid path", "a path may not have \".\", \"..\" or empty parts: "+p)
		return
	}
	r.ServeMux.ServeHTTP(w, req)
}

// HandleFunc registers h for pattern and records it.
func (r *router) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	r.Handle(pattern, http.HandlerFunc(h))
}

// allowed lists the methods some route other than the catch-all would
// answer r's path with.
func (r *router) allowed(req *http.Request) []string {
	var allow []string
	for _, rt := range r.routes {
		if rt.Method == "" || slices.Contains(allow, rt.Method) {
			continue
		}
		probe := req.Clone(req.Context())
		probe.Method = rt.Method
		if _, pattern := r.Handler(probe); pattern != "" && pattern != catchAll {
			allow = append(allow, rt.Method)
		}
	}
	if slices.Contains(allow, http.MethodGet) {
		allow = append(allow, http.MethodHead)
	}
	return allow
}

// catchAll answers what no other route does, so that every error is JSON.
const catchAll = "/"

// notFound answers 405 with Allow for a known path asked with another
// method, else 404.
func (a *API) notFound(w http.ResponseWriter, r *http.Request) {
	if allow := a.mux.allowed(r); len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method not allowed", r.Method+" "+r.URL.Path+": allowed "+strings.Join(allow, ", "))
		return
	}
	writeError(w, http.StatusNotFound, "no such endpoint", r.Method+" "+r.URL.Path)
}
