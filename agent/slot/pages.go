package slot

import (
	"embed"
	"encoding/json"
	"html/template"
	"net/http"

	"github.com/coder-slots/coder-slots/agent/supervisor"
)

//go:embed templates/*.html
var templateFS embed.FS

var pages = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// pageData is what the placeholder and unavailable pages show.
type pageData struct {
	Slot     string
	URL      string
	AdminURL string
	Error    string
	Status   string
	Reason   string
}

func (s *Slot) pageData() pageData {
	d := pageData{Slot: s.cfg.Name, URL: s.cfg.URL, AdminURL: s.cfg.AdminURL}
	if msg := s.errMsg.Load(); msg != nil {
		d.Error = *msg
	}
	return d
}

// placeholder answers for an empty slot: JSON health on /health, a page elsewhere.
// While the slot awaits its app, it says so instead (see Await).
func (s *Slot) placeholder(w http.ResponseWriter, r *http.Request) {
	// A target set since the request was routed: the app just took over.
	if s.waiting.Load() != nil || s.target.Load() != nil {
		s.unavailable(w, r)
		return
	}
	servePlaceholder(w, r, s.pageData())
}

// Placeholder is the placeholder of slot name alone, as `slotagent
// placeholder` serves it outside the agent: the same page (url is the
// slot's, adminURL the panel's; either may be empty) and /health.
func Placeholder(name, url, adminURL string) http.Handler {
	d := pageData{Slot: name, URL: url, AdminURL: adminURL}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { servePlaceholder(w, r, d) })
}

func servePlaceholder(w http.ResponseWriter, r *http.Request, d pageData) {
	if r.URL.Path == "/health" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "healthy", "slot": d.Slot, "type": "placeholder"})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = pages.ExecuteTemplate(w, "placeholder.html", d)
}

// unavailable answers 503 while the slot's app is down, restarting or not
// yet listening; the page refreshes itself.
func (s *Slot) unavailable(w http.ResponseWriter, _ *http.Request) {
	d := s.pageData()
	d.Status = "starting"
	if w := s.waiting.Load(); w != nil {
		d.Reason = w.Reason
	}
	if t := s.target.Load(); t != nil && t.proc != nil {
		info := t.proc.Info()
		d.Reason = info.Reason
		if info.Status != supervisor.Online {
			d.Status = string(info.Status)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", "2")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = pages.ExecuteTemplate(w, "unavailable.html", d)
}
