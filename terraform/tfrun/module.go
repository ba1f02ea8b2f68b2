package tfrun

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// ModuleDir is the folder the throw-away root module finds the module in.
const ModuleDir = "coder-slots"

// rootModule uses the module the way a template does, for validate and
// plan: a coder_agent, the module with its agent_id, and the outputs a plan
// summary reads. app_host and app_url_style pass through; null keeps the
// module's default.
const rootModule = `# A throw-away root module around the coder-slots module (slotprov validate and plan).
terraform {
  required_providers {
    coder = {
      source = "coder/coder"
    }
  }
}

variable "app_host" {
  type    = string
  default = null
}

variable "app_url_style" {
  type    = string
  default = null
}

data "coder_provisioner" "me" {}

resource "coder_agent" "main" {
  arch = data.coder_provisioner.me.arch
  os   = "linux"
}

module "slots" {
  source        = "./` + ModuleDir + `"
  agent_id      = coder_agent.main.id
  app_host      = var.app_host
  app_url_style = var.app_url_style
}

output "app_urls" {
  value = module.slots.app_urls
}

output "workspace_env" {
  value = module.slots.workspace_env
}

output "container_env_names" {
  value = keys(module.slots.workspace_env)
}
`

// IsModule reports whether dir holds a module for templates (it declares
// the variable agent_id and no coder_agent) rather than a template.
func IsModule(dir string) (bool, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return false, fmt.Errorf("syntax: %w", err)
	}
	p := hclparse.NewParser()
	agentID, agent := false, false
	for _, name := range names {
		f, diags := p.ParseHCLFile(name)
		if diags.HasErrors() {
			return false, fmt.Errorf("syntax: %s", oneLine(diags.Error()))
		}
		body, ok := f.Body.(*hclsyntax.Body)
		if !ok {
			continue
		}
		for _, b := range body.Blocks {
			switch {
			case b.Type == "variable" && len(b.Labels) == 1 && b.Labels[0] == "agent_id":
				agentID = true
			case b.Type == "resource" && len(b.Labels) == 2 && b.Labels[0] == "coder_agent":
				agent = true
			}
		}
	}
	return agentID && !agent, nil
}

// layout copies dir into scratch as Terraform runs it: a template as it
// is, a module under ModuleDir beside the root module that uses it.
func layout(dir, scratch string) error {
	module, err := IsModule(dir)
	if err != nil {
		return err
	}
	if !module {
		return copyTemplate(dir, scratch)
	}
	if err := copyTemplate(dir, filepath.Join(scratch, ModuleDir)); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(scratch, "main.tf"), []byte(rootModule), 0o644); err != nil {
		return fmt.Errorf("terraform: root module: %w", err)
	}
	return nil
}
