package static

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/agent/internal/testkit"
)

// site writes a small site beside a secret outside it, with links that try
// to lead out, and serves it.
func site(t *testing.T, spa bool) (root, secret string, srv *httptest.Server) {
	t.Helper()
	top := t.TempDir()
	root = filepath.Join(top, "site")
	secret = filepath.Join(top, "secret.txt")
	files := map[string]string{
		"index.html":          "<h1>home</h1>",
		"app.js":              "console.log('app')",
		"app.js.gz":           "GZIPPED-app.js",
		"style.css":           "body{}",
		"style.css.br":        "BROTLI-style.css",
		"style.css.gz":        "GZIPPED-style.css",
		"docs/index.html":     "<h1>docs</h1>",
		".env":                "SECRET=1",
		".git/config":         "[core]",
		"img/.hidden.png":     "x",
		"big.txt":             strings.Repeat("0123456789", 100),
		"sub/inside-link.txt": "inside",
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(secret, []byte("TOP SECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"out.txt":    secret,                // absolute, outside
		"up.txt":     "../secret.txt",       // relative, outside
		"outdir":     top,                   // a folder outside
		"in.txt":     "sub/inside-link.txt", // inside: served
		"etc-passwd": "/etc/passwd",
	} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	h, err := New(root, spa)
	if err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); h.Close() })
	return root, secret, srv
}

func get(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// No transparent gzip: the test sees what the server sent.
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestServesFilesWithTypesAndCaching(t *testing.T) {
	_, _, srv := site(t, false)
	for _, c := range []struct{ path, ctype, body string }{
		{"/", "text/html; charset=utf-8", "<h1>home</h1>"},
		{"/index.html", "text/html; charset=utf-8", "<h1>home</h1>"},
		{"/app.js", "text/javascript; charset=utf-8", "console.log('app')"},
		{"/style.css", "text/css; charset=utf-8", "body{}"},
		{"/docs/", "text/html; charset=utf-8", "<h1>docs</h1>"},
		{"/in.txt", "text/plain; charset=utf-8", "inside"},
	} {
		resp, body := get(t, srv.URL+c.path, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.ctype || body != c.body {
			t.Errorf("GET %s: %d %q %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	resp, _ := get(t, srv.URL+"/docs", nil)
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/docs/" {
		t.Errorf("GET /docs: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	resp, _ = get(t, srv.URL+"/app.js", nil)
	etag, lastMod := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if etag == "" || lastMod == "" {
		t.Fatalf("no ETag (%q) or Last-Modified (%q)", etag, lastMod)
	}
	if resp, body := get(t, srv.URL+"/app.js", map[string]string{"If-None-Match": etag}); resp.StatusCode != 304 || body != "" {
		t.Errorf("If-None-Match: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get(t, srv.URL+"/app.js", map[string]string{"If-Modified-Since": lastMod}); resp.StatusCode != 304 {
		t.Errorf("If-Modified-Since: %d", resp.StatusCode)
	}
	if resp, _ := get(t, srv.URL+"/app.js", map[string]string{"If-None-Match": `"other"`}); resp.StatusCode != 200 {
		t.Errorf("other ETag: %d", resp.StatusCode)
	}
	resp, body := get(t, srv.URL+"/big.txt", map[string]string{"Range": "bytes=10-14"})
	if resp.StatusCode != 206 || body != "01234" || resp.Header.Get("Content-Range") != "bytes 10-14/1000" {
		t.Errorf("range: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}
}

func TestPrecompressed(t *testing.T) {
	_, _, srv := site(t, false)
	for _, c := range []struct{ path, accept, enc, body string }{
		{"/style.css", "gzip, br", "br", "BROTLI-style.css"},
		{"/style.css", "gzip", "gzip", "GZIPPED-style.css"},
		{"/style.css", "br;q=0, gzip", "gzip", "GZIPPED-style.css"},
		{"/style.css", "", "", "body{}"},
		{"/style.css", "identity", "", "body{}"},
		{"/app.js", "br, gzip", "gzip", "GZIPPED-app.js"},
		{"/app.js", "*", "gzip", "GZIPPED-app.js"},
	} {
		resp, body := get(t, srv.URL+c.path, map[string]string{"Accept-Encoding": c.accept})
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != c.enc || body != c.body ||
			resp.Header.Get("Content-Type") != "text/"+map[bool]string{true: "css", false: "javascript"}[strings.HasSuffix(c.path, ".css")]+"; charset=utf-8" ||
			!strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
			t.Errorf("GET %s (Accept-Encoding %q): %d enc %q type %q body %q", c.path, c.accept, resp.StatusCode,
				resp.Header.Get("Content-Encoding"), resp.Header.Get("Content-Type"), body)
		}
	}
	plain, _ := get(t, srv.URL+"/style.css", nil)
	br, _ := get(t, srv.URL+"/style.css", map[string]string{"Accept-Encoding": "br"})
	if plain.Header.Get("ETag") == br.Header.Get("ETag") {
		t.Errorf("the plain and the brotli file share the ETag %s", br.Header.Get("ETag"))
	}
}

func TestSPAFallback(t *testing.T) {
	_, _, spa := site(t, true)
	if resp, body := get(t, spa.URL+"/users/42", nil); resp.StatusCode != 200 || body != "<h1>home</h1>" {
		t.Errorf("SPA route: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get(t, spa.URL+"/missing.js", nil); resp.StatusCode != 404 {
		t.Errorf("SPA: a missing asset answers %d, want 404", resp.StatusCode)
	}
	if resp, body := get(t, spa.URL+"/.env", nil); resp.StatusCode != 404 || strings.Contains(body, "SECRET") {
		t.Errorf("SPA: a dotfile answers %d %q", resp.StatusCode, body)
	}
	_, _, plain := site(t, false)
	if resp, _ := get(t, plain.URL+"/users/42", nil); resp.StatusCode != 404 {
		t.Errorf("without SPA a route answers %d, want 404", resp.StatusCode)
	}
}

// TestNothingOutsideTheFolder: traversal, encoded traversal, dotfiles and
// symlinks out of the folder, sent on a raw socket, never reach a file
// outside it or a dotfile.
func TestNothingOutsideTheFolder(t *testing.T) {
	_, _, srv := site(t, true)
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, target := range []string{
		"/../secret.txt", "/../../../../etc/passwd", "/..%2fsecret.txt", "/%2e%2e/secret.txt",
		"/docs/../../secret.txt", "/docs/%2e%2e/%2e%2e/secret.txt", "/..\\secret.txt", "/%5c..%5csecret.txt",
		"/out.txt", "/up.txt", "/outdir/secret.txt", "/etc-passwd", "/outdir/",
		"/.env", "/.git/config", "/img/.hidden.png", "/%2eenv", "/docs/../.env", "/./.env",
		"//etc/passwd", "/%00", "/index.html%00.js",
	} {
		all := testkit.RawGet(t, addr, target)
		status, _, _ := strings.Cut(all, "\r\n")
		if strings.Contains(all, "TOP SECRET") || strings.Contains(all, "SECRET=1") || strings.Contains(all, "root:") || strings.Contains(all, "[core]") {
			t.Errorf("GET %s leaked: %q", target, all)
		}
		if strings.Contains(status, " 200") && !strings.Contains(all, "<h1>home</h1>") {
			t.Errorf("GET %s: %s with something else than the SPA's index: %q", target, status, all)
		}
	}
}

func TestMethods(t *testing.T) {
	_, _, srv := site(t, false)
	resp, err := http.Post(srv.URL+"/index.html", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	req, _ := http.NewRequest(http.MethodHead, srv.URL+"/big.txt", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 1000 {
		t.Errorf("HEAD: %d %d", resp.StatusCode, resp.ContentLength)
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{"/": "", "/a/b.js": "a/b.js", "/a//b": "a/b", "/a/": "a"} {
		if got, ok := Clean(in); !ok || got != want {
			t.Errorf("Clean(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "a", "/..", "/a/../b", "/.env", "/a/.git/x", "/a\\b", "/a\x00", "/./a"} {
		if got, ok := Clean(in); ok {
			t.Errorf("Clean(%q) = %q, want refused", in, got)
		}
	}
}

// FuzzClean: whatever the path, an accepted name is local, has no dot
// segment and cleans to itself.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/../x", "/a/./b", "//x", "/.env", "/a\\..\\b", "/%2e%2e/", "/a/b/../../.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, ok := Clean(p)
		if !ok {
			return
		}
		if name == "" {
			return
		}
		if !filepath.IsLocal(name) || strings.ContainsAny(name, "\\\x00") || filepath.Clean(name) != name {
			t.Fatalf("Clean(%q) = %q: not a clean local name", p, name)
		}
		for _, seg := range strings.Split(name, "/") {
			if seg == "" || strings.HasPrefix(seg, ".") {
				t.Fatalf("Clean(%q) = %q: segment %q", p, name, seg)
			}
		}
	})
}
