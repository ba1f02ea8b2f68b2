// Package tfrun runs the real Terraform on a rendered template, through
// terraform-exec: a syntax check with hclparse, then `terraform init` and
// `validate`, or a `plan` of one workspace with the CODER_WORKSPACE_*
// variables Coder sets. It works on a scratch copy of the template, so the
// template directory never gets a .terraform folder or a lock file made
// against a local provider mirror.
package tfrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/terraform-exec/tfexec"
)

// Runner runs Terraform.
type Runner struct {
	// Terraform is the terraform binary; empty: "terraform" on PATH.
	Terraform string
	// CLIConfig is passed to Terraform as TF_CLI_CONFIG_FILE whatever the
	// environment says (empty: Terraform's default, ~/.terraformrc).
	CLIConfig string
}

// CheckSyntax parses every .tf file in dir with hclparse.
func CheckSyntax(dir string) error {
	names, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return fmt.Errorf("syntax: %w", err)
	}
	if len(names) == 0 {
		return fmt.Errorf("syntax: %s has no .tf files", dir)
	}
	p := hclparse.NewParser()
	for _, name := range names {
		if _, diags := p.ParseHCLFile(name); diags.HasErrors() {
			return fmt.Errorf("syntax: %s", oneLine(diags.Error()))
		}
	}
	return nil
}

// workdir is an initialised scratch copy of a template.
type workdir struct {
	dir string
	tf  *tfexec.Terraform
}

// prepare checks dir's syntax, copies it into a scratch directory and runs
// terraform init there with the given extra environment. Call cleanup when done.
func (r Runner) prepare(ctx context.Context, dir string, extraEnv map[string]string) (*workdir, func(), error) {
	if err := CheckSyntax(dir); err != nil {
		return nil, nil, err
	}
	bin := r.Terraform
	if bin == "" {
		bin = "terraform"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, nil, fmt.Errorf("terraform: %q not found on PATH; install Terraform (>= 1.5) and put it on PATH", bin)
	}
	if r.CLIConfig != "" {
		// Terraform runs in a scratch copy: a relative path would be
		// looked up there, find nothing, and send Terraform to the public
		// registry with only a warning.
		abs, err := filepath.Abs(r.CLIConfig)
		if err != nil {
			return nil, nil, fmt.Errorf("terraform: CLI config %s: %w", r.CLIConfig, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, nil, fmt.Errorf("terraform: CLI config %s: %w (the local provider mirror's is written by `make tf-mirror`)", abs, unwrapPath(err))
		}
		r.CLIConfig = abs
	}
	scratch, err := os.MkdirTemp("", "slotprov-tf-")
	if err != nil {
		return nil, nil, fmt.Errorf("terraform: %w", err)
	}
	cleanup := func() { os.RemoveAll(scratch) }
	if err := layout(dir, scratch); err != nil {
		cleanup()
		return nil, nil, err
	}
	tf, err := tfexec.NewTerraform(scratch, path)
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("terraform: %w", err)
	}
	if err := tf.SetEnv(r.env(extraEnv)); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("terraform: %w", err)
	}
	var stderr bytes.Buffer
	tf.SetStderr(&stderr)
	if err := tf.Init(ctx, tfexec.Upgrade(false)); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("terraform init: %s", firstError(stderr.String(), err))
	}
	tf.SetStderr(io.Discard)
	return &workdir{dir: scratch, tf: tf}, cleanup, nil
}

// env is the environment Terraform runs with: ours, without anything that
// would change what Terraform does behind our back (TF_VAR_*, TF_CLI_ARGS*,
// TF_DATA_DIR, and every CODER_* variable, the session token among them),
// with TF_CLI_CONFIG_FILE set explicitly, plus extra.
func (r Runner) env(extra map[string]string) map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "CODER_") || strings.HasPrefix(k, "TF_VAR_") || strings.HasPrefix(k, "TF_CLI_ARGS") || k == "TF_DATA_DIR" || len(tfexec.ProhibitedEnv(map[string]string{k: v})) > 0 {
			continue
		}
		env[k] = v
	}
	env["TF_CLI_CONFIG_FILE"] = r.CLIConfig
	env["CHECKPOINT_DISABLE"] = "1"
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// copyTemplate copies what Coder would get of a template (no hidden files,
// so no lock file and no .terraform) into dst.
func copyTemplate(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("terraform: %w", err)
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return fmt.Errorf("terraform: %w", err)
		}
		if rel == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("terraform: %w", err)
		}
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("terraform: %w", err)
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// Validate runs terraform init and validate on a scratch copy of dir.
func (r Runner) Validate(ctx context.Context, dir string) error {
	wd, cleanup, err := r.prepare(ctx, dir, nil)
	if err != nil {
		return err
	}
	defer cleanup()
	out, err := wd.tf.Validate(ctx)
	if err != nil {
		return fmt.Errorf("terraform validate: %s", oneLine(err.Error()))
	}
	if !out.Valid {
		for _, d := range out.Diagnostics {
			if d.Severity == "error" {
				where := ""
				if d.Range != nil {
					where = fmt.Sprintf("%s:%d: ", d.Range.Filename, d.Range.Start.Line)
				}
				return fmt.Errorf("terraform validate: %s%s", where, oneLine(d.Summary+": "+d.Detail))
			}
		}
		return errors.New("terraform validate: the configuration is not valid")
	}
	return nil
}

// firstError picks Terraform's first "Error: …" paragraph from its stderr,
// on one line; else err's message.
func firstError(stderr string, err error) string {
	lines := strings.Split(stderr, "\n")
	for i, l := range lines {
		l = strings.TrimLeft(l, "│╷╵ ")
		if !strings.HasPrefix(l, "Error: ") {
			continue
		}
		var para []string
		for _, m := range lines[i:] {
			m = strings.TrimLeft(m, "│╷╵ ")
			if m == "" && len(para) > 1 {
				break
			}
			para = append(para, m)
		}
		return oneLine(strings.TrimPrefix(strings.Join(para, " "), "Error: "))
	}
	return oneLine(err.Error())
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
