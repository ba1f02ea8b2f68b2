// Package static serves a static site from one folder, as the agent does
// for a slot whose app has no process: content types by extension, ETag
// and Last-Modified with 304s and ranges (net/http's ServeContent),
// precompressed .br and .gz files when the client accepts them, and an
// optional fallback to index.html for single-page apps.
//
// Nothing outside the folder is ever served: the folder is opened as an
// os.Root, which refuses a path or a symlink that leads out of it, and any
// path with a segment starting with a dot (.., .git, .env) is refused
// before the file system is asked.
package static

import (
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
)

// Handler serves one folder.
type Handler struct {
	root *os.Root
	spa  bool
}

// New opens dir; with spa, a GET for a path that names no file (and has no
// extension) is answered with the root's index.html. Close releases it.
func New(dir string, spa bool) (*Handler, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("static site: %w", err)
	}
	return &Handler{root: root, spa: spa}, nil
}

// Close releases the folder.
func (h *Handler) Close() error { return h.root.Close() }

// Clean maps a request path to a file name inside the folder: "" for the
// root, a slash-separated relative name otherwise. It refuses (ok false) a
// path that is not absolute, has a NUL or a backslash, or has a segment that
// starts with a dot (which includes . and ..), so dotfiles and escapes are
// never looked up.
func Clean(p string) (name string, ok bool) {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\x00\\") {
		return "", false
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if strings.HasPrefix(seg, ".") {
			return "", false
		}
	}
	name = strings.Trim(path.Clean(p), "/")
	return name, true
}

// encodings are the precompressed variants looked for, best first.
var encodings = []struct{ token, ext string }{{"br", ".br"}, {"gzip", ".gz"}}

// ServeHTTP answers GET and HEAD.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := Clean(r.URL.Path)
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	f, info, err := h.open(name)
	if err == nil && info.IsDir() {
		f.Close()
		if !strings.HasSuffix(r.URL.Path, "/") {
			// Built from the clean name, so never "//host" (an open redirect).
			loc := "/" + name + "/"
			if r.URL.RawQuery != "" {
				loc += "?" + r.URL.RawQuery
			}
			w.Header().Set("Location", loc)
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		name = path.Join(name, "index.html")
		f, info, err = h.open(name)
	}
	if err != nil && h.spa && path.Ext(name) == "" {
		name = "index.html"
		f, info, err = h.open(name)
	}
	if err != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	defer f.Close()
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Add("Vary", "Accept-Encoding")
	enc := ""
	if accepts := r.Header.Get("Accept-Encoding"); accepts != "" {
		for _, e := range encodings {
			if !acceptsEncoding(accepts, e.token) {
				continue
			}
			cf, cinfo, err := h.open(name + e.ext)
			if err != nil {
				continue
			}
			f.Close()
			f, info, enc = cf, cinfo, e.token
			w.Header().Set("Content-Encoding", enc)
			break
		}
	}
	etag := `"` + strconv.FormatInt(info.ModTime().UnixNano(), 36) + "-" + strconv.FormatInt(info.Size(), 36)
	if enc != "" {
		etag += "-" + enc
	}
	w.Header().Set("ETag", etag+`"`)
	http.ServeContent(w, r, "", info.ModTime(), f)
}

// open opens a regular file inside the root.
func (h *Handler) open(name string) (*os.File, fs.FileInfo, error) {
	if name == "" {
		name = "."
	}
	f, err := h.root.Open(name)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err == nil && !info.IsDir() && !info.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, info, nil
}

// acceptsEncoding reports whether an Accept-Encoding value accepts token
// (named with a q above 0, or through *).
func acceptsEncoding(header, token string) bool {
	star := false
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		switch name {
		case token:
			return q > 0
		case "*":
			star = q > 0
		}
	}
	return star
}
