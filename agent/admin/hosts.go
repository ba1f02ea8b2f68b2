package admin

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
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
	admin string      // ADMIN_URL's host name in the short app URL form; "" for none
	extra []hostEntry // config.Config.AdminAllowedHosts
}

// hostEntry is one entry of admin_allowed_hosts, normalised.
type hostEntry struct {
	name     string // the host name; for a wildcard, the domain after "*."
	port     string // the port a Host must carry; "" for any
	wildcard bool   // the entry is "*.domain": name's subdomains, not name
}

// NewHosts allows the host of adminURL (may be empty) and extra: "name"
// (any port), "name:port", "*.domain" (its subdomains, any port) or
// "*.domain:port".
func NewHosts(adminURL string, extra []string) Hosts {
	h := Hosts{}
	if u, err := url.Parse(adminURL); err == nil && u.Hostname() != "" {
		h.admin = shortAppForm(normalHost(u.Hostname()))
	}
	for _, e := range extra {
		var entry hostEntry
		entry.name, entry.port = splitHost(e)
		entry.name, entry.wildcard = strings.CutPrefix(entry.name, "*.")
		h.extra = append(h.extra, entry)
	}
	return h
}

// splitHost splits a Host header (or an entry) into its normalised name and
// its port ("" when it has none).
func splitHost(host string) (name, port string) {
	name = host
	if n, p, err := net.SplitHostPort(host); err == nil {
		name, port = n, p
	}
	return normalHost(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")), port
}

// Allows reports whether host, a request's Host, names the admin panel.
func (h Hosts) Allows(host string) bool {
	name, port := splitHost(host)
	switch {
	case name == "":
		return false
	case name == "localhost" || net.ParseIP(name) != nil:
		return true
	case h.admin != "" && shortAppForm(name) == h.admin:
		return true
	}
	for _, e := range h.extra {
		if e.port != "" && e.port != port {
			continue
		}
		if e.wildcard && isSubdomain(name, e.name) || !e.wildcard && name == e.name {
			return true
		}
	}
	return false
}

// isSubdomain reports whether name is a subdomain of domain: it ends in
// "."+domain after one or more labels, none of them empty.
func isSubdomain(name, domain string) bool {
	sub, ok := strings.CutSuffix(name, "."+domain)
	return ok && !slices.Contains(strings.Split(sub, "."), "")
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
