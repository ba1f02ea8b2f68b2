// Package e2e is `make e2e`: the template rendered by slotprov, pushed to a
// real Coder server (built from its Go module) with slotprov and with the
// coder CLI, and a real workspace built from it on a real Docker engine
// (Debian's docker.io, started by the test itself): apps healthy, the panel
// and an app served through Coder's subdomain proxy, a deploy, a clean stop,
// a start that brings the app back. The tests carry the build tag e2e, so
// `make test` never needs Docker or root.
package e2e
