package render

import (
	"fmt"
	"strings"

	"github.com/coder-slots/coder-slots/provision/config"
)

// moduleReadme is the module's README: what it adds, its usage block and
// its inputs.
func moduleReadme(c *config.Config) []byte {
	appHost := ""
	if c.AppHost == "" {
		appHost = "\n  app_host = \"*.coder.example.com\" # your deployment's wildcard app host"
	}
	// The same grace the docker target gives its container.
	grace := c.Docker.StopGraceSeconds
	var b strings.Builder
	fmt.Fprintf(&b, `# coder-slots module

Rendered by `+"`slotprov render --target module`"+` from slots.yaml.

Adds an admin panel and deployment slots to a workspace of a template you
already have: six subdomain apps (the panel and the slots %s), their
URLs in the agent's environment (`+"`coder_env`"+`), and a `+"`coder_script`"+`
that installs slotagent when the image has none (from `+"`install_url`"+`,
checked against `+"`install_sha256`"+`) and starts it as a service beside the
Coder agent. slotagent keeps its state under `+"`data_dir`"+` and brings the
deployed apps back on the next start.

## Usage

Copy this folder next to your template's main.tf as `+"`coder-slots/`"+`, then:

`+"```tf"+`
module "slots" {
  count    = data.coder_workspace.me.start_count
  source   = "./coder-slots"
  agent_id = coder_agent.main.id%s
}
`+"```"+`

and push the template as usual (`+"`coder templates push`"+`).

Add this line to your container for clean stops:

`+"```tf"+`
resource "docker_container" "workspace" {
  # ...
  destroy_grace_seconds = %d
}
`+"```"+`

With it the Coder agent has time to run the module's stop script, which
stops slotagent cleanly. Without it the Docker provider removes the
container with a 0 s timeout: every process in it is killed at once on
`+"`coder stop`"+`, and slotagent recovers on the next start instead (the apps come back
on the same release; the workspace PostgreSQL replays its log). On
Kubernetes the same line is the pod's `+"`termination_grace_period_seconds`"+`
(above `+"`shutdown_timeout_seconds`"+`, %d s here).

`+"`slotagent`"+` is on the PATH of Coder's sessions (the script links it into
the agent's script bin folder and ~/.local/bin): `+"`slotagent status`"+`,
`+"`slotagent deploy a --repo URL --wait`"+`, `+"`slotagent logs a -f`"+`. The
service's own log is in `+"`<data_dir>/logs/slotagent.log`"+`; the script's
lines are in the workspace's startup log.

One instance of the module per workspace. Its ports (the panel's `+"`port`"+`
and each slot's) must be free: a port taken by another process, a data dir
that is not writable, an unreachable `+"`install_url`"+` or a checksum that
does not match is one line in the startup log, and nothing starts.

## Inputs

See variables.tf: `+"`agent_id`"+` is required%s; everything else has a
default from slots.yaml. `+"`slots`"+` changes single slots, e.g.
`+"`slots = { a = { share = \"public\" } }`"+`. `+"`install_url`"+` defaults to
the release of slotprov %s; for a build of your own, serve `+"`make dist`"+`'s
archives and set `+"`install_url`"+` (with `+"`{arch}`"+`) and `+"`install_sha256`"+`.

## Outputs

`+"`app_urls`"+`: each app's URL, by name (admin, slot_a, …).
`+"`workspace_env`"+`: slotagent's environment.
`, strings.Join(slotNames(c), ", "), appHost, grace, c.ShutdownTimeoutSeconds, requiredHost(c), c.Release)
	return []byte(b.String())
}

func requiredHost(c *config.Config) string {
	if c.AppHost == "" {
		return ", and so is `app_host` (slots.yaml had none)"
	}
	return ""
}
