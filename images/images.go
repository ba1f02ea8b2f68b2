// Package images holds the workspace image (images/Dockerfile, built with
// `make image`) and the Go code around it: it renders the small Dockerfile
// that a template in build mode carries in its build context, and inspects
// any Dockerfile with BuildKit's own parser to check the essentials.
package images

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/coder-slots/coder-slots/provision/config"
)

// Entrypoint is the workspace container's entrypoint.
var Entrypoint = []string{"slotagent", "run"}

// Summary is what Inspect finds in a Dockerfile.
type Summary struct {
	// Bases are the external images the stages start from (not earlier
	// stages), in order.
	Bases []string
	// Entrypoint is the final stage's ENTRYPOINT; EntrypointExec tells
	// whether it is in exec (JSON) form.
	Entrypoint     []string
	EntrypointExec bool
	// User is the final stage's last USER, "" when it has none.
	User string
}

// Inspect parses a Dockerfile with BuildKit's parser and summarises it.
func Inspect(dockerfile []byte) (Summary, error) {
	res, err := parser.Parse(bytes.NewReader(dockerfile))
	if err != nil {
		return Summary{}, fmt.Errorf("dockerfile: %w", err)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return Summary{}, fmt.Errorf("dockerfile: %w", err)
	}
	if len(stages) == 0 {
		return Summary{}, fmt.Errorf("dockerfile: no FROM")
	}
	// FROM may name its image through an ARG before the first FROM (the
	// workspace image's GO_IMAGE and NODE_IMAGE): take the ARG's default,
	// as a build without --build-arg does.
	defaults := map[string]string{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				defaults[kv.Key] = *kv.Value
			}
		}
	}
	var s Summary
	var names []string
	for _, st := range stages {
		base := os.Expand(st.BaseName, func(name string) string { return defaults[name] })
		if !slices.Contains(names, strings.ToLower(base)) {
			s.Bases = append(s.Bases, base)
		}
		if st.Name != "" {
			names = append(names, strings.ToLower(st.Name))
		}
	}
	for _, cmd := range stages[len(stages)-1].Commands {
		switch c := cmd.(type) {
		case *instructions.EntrypointCommand:
			s.Entrypoint, s.EntrypointExec = c.CmdLine, !c.PrependShell
		case *instructions.UserCommand:
			s.User = c.User
		}
	}
	return s, nil
}

// Essentials checks what every workspace image needs: an exec-form
// ENTRYPOINT ["slotagent", "run"] (so slotagent is PID 1 and gets the
// signals) and a non-root user. With pinned, every base image must name a
// version (a tag other than latest, or a digest).
func (s Summary) Essentials(pinned bool) error {
	if !s.EntrypointExec || !slices.Equal(s.Entrypoint, Entrypoint) {
		return fmt.Errorf("dockerfile: the final stage needs ENTRYPOINT [\"slotagent\", \"run\"] in exec form, has %q (exec form: %t)", s.Entrypoint, s.EntrypointExec)
	}
	if u, _, _ := strings.Cut(s.User, ":"); u == "" || u == "root" || u == "0" {
		return fmt.Errorf("dockerfile: the final stage runs as root (USER %q); want a non-root user", s.User)
	}
	if pinned {
		for _, b := range s.Bases {
			if !Pinned(b) {
				return fmt.Errorf("dockerfile: base image %q is not pinned to a version", b)
			}
		}
	}
	return nil
}

// Pinned reports whether an image reference names a version: a digest, or
// a tag other than latest.
func Pinned(ref string) bool {
	if strings.Contains(ref, "@sha256:") {
		return true
	}
	last := ref[strings.LastIndex(ref, "/")+1:]
	_, tag, ok := strings.Cut(last, ":")
	return ok && tag != "" && tag != "latest"
}

// Render writes the build-mode Dockerfile for a template: the base image
// with Node.js, the Debian packages slotagent's apps need (Python 3 with
// venv and pip among them) plus the extra
// ones, pnpm, a coder user (uid 1000) and slotagent, taken from the
// workspace image im.Ref. Every value comes from a validated config
// (image references and Debian package names), so nothing in it can
// break out of its instruction. The result is checked with Inspect.
func Render(im config.Image, postgres bool) ([]byte, error) {
	pkgs := []string{"ca-certificates", "curl", "git", "openssh-client", "procps", "python3", "python3-venv", "python3-pip"}
	if postgres {
		pkgs = append(pkgs, "postgresql", "postgresql-client")
	}
	for _, p := range im.Build.AptPackages {
		if !slices.Contains(pkgs, p) {
			pkgs = append(pkgs, p)
		}
	}
	var b strings.Builder
	line := func(s string) { b.WriteString(s + "\n") }
	line("# syntax=docker/dockerfile:1")
	line("# Rendered by slotprov from slots.yaml (image.mode: build). Coder's Docker")
	line("# host builds it; slotagent comes from the workspace image " + im.Ref + ".")
	line("FROM " + im.Ref + " AS slotagent")
	line("")
	line("FROM " + im.Build.BaseImage())
	line("USER root")
	line("RUN apt-get update \\")
	line(" && apt-get install -y --no-install-recommends \\")
	line("      " + strings.Join(pkgs, " ") + " \\")
	line(" && rm -rf /var/lib/apt/lists/*")
	line("RUN npm install --global pnpm@10 && npm cache clean --force")
	line("# uid 1000 becomes coder: the node user of the Node.js images, else a new user.")
	line("RUN if id node >/dev/null 2>&1; then \\")
	line("      groupmod --new-name coder node && usermod --login coder --home /home/coder --move-home node; \\")
	line("    else useradd --create-home --uid 1000 --shell /bin/bash coder; fi \\")
	line(" && mkdir -p /home/coder/data && chown -R coder:coder /home/coder")
	line("COPY --from=slotagent /usr/local/bin/slotagent /usr/local/bin/slotagent")
	line("USER coder")
	line("WORKDIR /home/coder")
	line("ENV HOME=/home/coder")
	line(`ENTRYPOINT ["slotagent", "run"]`)
	out := []byte(b.String())
	s, err := Inspect(out)
	if err != nil {
		return nil, fmt.Errorf("render dockerfile: %w", err)
	}
	if err := s.Essentials(false); err != nil {
		return nil, fmt.Errorf("render dockerfile: %w", err)
	}
	return out, nil
}
