// Package cli is slotprov's command line: init, render, validate, plan,
// push and version, each a thin layer over the config, render, tfrun and
// push packages.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/coder-slots/coder-slots/provision/config"
	"github.com/coder-slots/coder-slots/provision/push"
	"github.com/coder-slots/coder-slots/provision/tarball"
	"github.com/coder-slots/coder-slots/terraform/render"
	"github.com/coder-slots/coder-slots/terraform/tfrun"
)

// Run runs slotprov with args and returns its exit code; errors go to
// stderr on one line.
func Run(version string, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := New(version)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "slotprov: "+strings.Join(strings.Fields(err.Error()), " "))
		return 1
	}
	return 0
}

// New returns slotprov's command tree; version is printed by `slotprov
// version`.
func New(version string) *cobra.Command {
	root := &cobra.Command{
		Use:           "slotprov",
		Short:         "Renders, validates, plans and pushes the coder-slots Coder template",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		versionCmd(version), initCmd(), renderCmd(version), validateCmd(), planCmd(), pushCmd(),
	)
	return root
}

func versionCmd(version string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "slotprov %s (%s)\n", version, runtime.Version())
		},
	}
}

func initCmd() *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "init [-o slots.yaml]",
		Short: "Write a commented example slots.yaml",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.WriteExample(out, force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Wrote %s; edit it, then: slotprov render -c %s -o template\n", out, out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "slots.yaml", "file to write")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	return cmd
}

// loadConfig loads the config file named by --config (may be empty) with
// the command's flags.
func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	file, _ := cmd.Flags().GetString("config")
	return config.Load(file, cmd.Flags())
}

func addConfigFlag(fs *pflag.FlagSet, required bool) {
	help := "slots.yaml to read (optional: defaults and SLOTPROV_* environment)"
	if required {
		help = "slots.yaml to read"
	}
	fs.StringP("config", "c", "", help)
}

func renderCmd(version string) *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "render -c slots.yaml -o DIR [--target docker|kubernetes|module]",
		Short: "Write the Coder template (main.tf, and build/Dockerfile in build mode), or with --target module a Terraform module, into DIR",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("render: -o DIR is required")
			}
			start := time.Now()
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			// A module installs this release's slotagent by default.
			c.Release = version
			if warn := c.SharedPorts(); warn != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "slotprov: warning: "+warn)
			}
			files, err := render.Files(c)
			if err != nil {
				return err
			}
			if err := render.Write(out, files, force); err != nil {
				return err
			}
			took := time.Since(start)
			pack, err := tarball.Pack(out)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, name := range slices.Sorted(maps.Keys(files)) {
				fmt.Fprintf(w, "Wrote %s/%s (%d bytes)\n", out, name, len(files[name]))
			}
			fmt.Fprintf(w, "Rendered in %s; the template tarball is %d bytes (Coder's limit: %d)\n", took.Round(time.Millisecond), len(pack.Tar), tarball.Limit)
			if render.ContainerResourcesNeed2x(c) {
				fmt.Fprintf(w, "Note: the container's requests and limits need hashicorp/kubernetes 2.x (%s); the local provider mirror's 1.13.4 cannot validate or plan this template\n", render.KubernetesProviderVersionResources)
			}
			return nil
		},
	}
	addConfigFlag(cmd.Flags(), true)
	cmd.Flags().StringVarP(&out, "output", "o", "", "template directory to write")
	cmd.Flags().BoolVar(&force, "force", false, "write into a directory that is not a previous render")
	config.AddFlags(cmd.Flags())
	return cmd
}

// keyFlags adds a string flag for each of the named settings.
func keyFlags(cmd *cobra.Command, names ...string) {
	for _, k := range config.Keys() {
		if slices.Contains(names, k.Name) {
			cmd.Flags().String(k.Flag, "", k.Help+" ($"+strings.Join(k.Env, ", $")+")")
		}
	}
}

// terraformFlags adds what validate and plan need: the config file (for
// terraform_config) and --terraform-config.
func terraformFlags(cmd *cobra.Command) {
	addConfigFlag(cmd.Flags(), false)
	keyFlags(cmd, "terraform_config")
}

func runner(cmd *cobra.Command) (tfrun.Runner, *config.Config, error) {
	c, err := loadConfig(cmd)
	if err != nil {
		return tfrun.Runner{}, nil, err
	}
	return tfrun.Runner{CLIConfig: c.TerraformConfig}, c, nil
}

func validateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validate DIR",
		Short: "Check the template's syntax, then run terraform init and validate on it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, _, err := runner(cmd)
			if err != nil {
				return err
			}
			start := time.Now()
			if err := r.Validate(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is valid (terraform init + validate in %s)\n", args[0], time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	terraformFlags(cmd)
	return cmd
}

func planCmd() *cobra.Command {
	var ws tfrun.Workspace
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plan DIR --workspace NAME --owner USER [--json]",
		Short: "Run terraform plan for one workspace and show its URLs, environment and apps",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, c, err := runner(cmd)
			if err != nil {
				return err
			}
			// What push would give the template's variables; unset ones
			// keep the defaults the render wrote.
			ws.Variables = render.ClusterVariables(c)
			if c.AppHost != "" {
				ws.Variables[render.VarAppHost] = c.AppHost
			}
			if c.AppURLStyle != "" {
				ws.Variables[render.VarAppURLStyle] = c.AppURLStyle
			}
			s, err := r.Plan(cmd.Context(), args[0], ws)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			fmt.Fprint(cmd.OutOrStdout(), s.Text())
			return nil
		},
	}
	terraformFlags(cmd)
	keyFlags(cmd, "app_host", "app_url_style")
	f := cmd.Flags()
	f.StringVar(&ws.Name, "workspace", "", "workspace name (CODER_WORKSPACE_NAME)")
	f.StringVar(&ws.Owner, "owner", "", "workspace owner's user name (CODER_WORKSPACE_OWNER)")
	f.StringVar(&ws.Transition, "transition", "start", "start or stop (CODER_WORKSPACE_TRANSITION)")
	f.StringVar(&ws.AccessURL, "access-url", "https://coder.example.com", "the deployment's access URL (CODER_AGENT_URL)")
	f.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	return cmd
}

func pushCmd() *cobra.Command {
	var name string
	var activate bool
	cmd := &cobra.Command{
		Use:   "push DIR [--name NAME] [--activate]",
		Short: "Upload the template to Coder as a new version, like `coder templates push`",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if name == "" {
				name = c.Template.Name
			}
			if module, err := tfrun.IsModule(args[0]); err != nil {
				return err
			} else if module {
				return fmt.Errorf("push: %s is a module, not a template: add it to a template with a module block (see its README.md), then push that template", args[0])
			}
			res, err := push.Push(cmd.Context(), push.Options{Dir: args[0], Name: name, Activate: activate, Config: c, Log: cmd.OutOrStdout()})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Pushed %s: version %s (%d-byte tarball)\n", name, res.VersionName, res.TarballBytes)
			return nil
		},
	}
	addConfigFlag(cmd.Flags(), false)
	cmd.Flags().StringVar(&name, "name", "", "template name (default: template.name)")
	cmd.Flags().BoolVar(&activate, "activate", false, "make the new version active (a new template starts with it)")
	keyFlags(cmd, "coder.url", "coder.session_token", "coder.organization", "app_host", "app_url_style", "template.description")
	return cmd
}
