package admin

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/coder-slots/coder-slots/agent/config"
)

// Hosts is the allow-list of the admin port's Host header, against DNS
// rebinding: a page on a name its author controls, re-pointed at
// 127.0.0.1, reaches the port as same-origin, but its requests carry that
// name as Host, which the list does not hold. A rebinding page cannot
// carry an IP address or localhost either (its origin would then not be
// its own), so these are always allowed: that is what `coder port-forward`,
// Coder's healthchecks and local tools send.
//
// Behind Coder's subdomain app proxy the panel sees the Host the browser
// used: Coder v2.30.0 relays with httputil.NewSingleHostReverseProxy, whose
// director leaves Host alone (coderd/workspaceapps/proxy.go,
// proxyWorkspaceApp, calls ServerTailnet.ReverseProxy in coderd/tailnet.go,
// which only points the URL at the agent's tailnet address). That Host is
// ADMIN_URL's, in either of Coder's app URL forms:
// slug--agent--workspace--owner or, from 2.27 on, slug--workspace--owner.
type Hosts struct {
	admin string   // ADMIN_URL's host name in the short app URL form; "" for none
	extra []string // config.Config.AdminAllowedHosts
}

// NewHosts allows the host of adminURL (may be empty) and extra: "name"
// (any port), "name:port" or "*.domain" (its subdomains).
func NewHosts(adminURL string, extra []string) Hosts {
	h := Hosts{extra: extra}
	if u, err := url.Parse(adminURL); err == nil && u.Hostname() != "" {
		h.admin = shortAppForm(normalHost(u.Hostname()))
	}
	return h
}

// Allows reports whether host, a request's Host, names the admin panel.
func (h Hosts) Allows(host string) bool {
	name := host
	if n, _, err := net.SplitHostPort(host); err == nil {
		name = n
	}
	name = normalHost(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]"))
	switch {
	case name == "":
		return false
	case name == "localhost" || net.ParseIP(name) != nil:
		return true
	case h.admin != "" && shortAppForm(name) == h.admin:
		return true
	}
	for _, e := range h.extra {
		_, _, withPort := net.SplitHostPort(e)
		switch {
		case strings.HasPrefix(e, "*."):
			if strings.HasSuffix(name, e[1:]) {
				return true
			}
		case withPort == nil:
			if strings.EqualFold(host, e) {
				return true
			}
		case name == e:
			return true
		}
	}
	return false
}

// normalHost is a host name in lower case without a final dot.
func normalHost(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// shortAppForm turns a Coder app host name slug--agent--workspace--owner.rest
// into slug--workspace--owner.rest; any other name is returned as it is.
func shortAppForm(name string) string {
	label, rest, _ := strings.Cut(name, ".")
	if parts := strings.Split(label, "--"); len(parts) == 4 {
		return parts[0] + "--" + parts[2] + "--" + parts[3] + "." + rest
	}
	return name
}

// check answers 421 with a JSON error to a request whose Host h does not
// allow, logged at debug level only (no log flooding under attack).
func (h Hosts) check(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.Allows(r.Host) {
			next.ServeHTTP(w, r)
			return
		}
		log.Debug("admin: refused a request for another host", "host", r.Host, "path", r.URL.Path)
		writeError(w, http.StatusMisdirectedRequest, "this admin panel does not answer to host "+fmt.Sprintf("%q", r.Host),
			"it answers to IP addresses, localhost and the host of ADMIN_URL; add other names to "+config.Describe("admin_allowed_hosts"))
	})
}
