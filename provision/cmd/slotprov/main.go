// Command slotprov renders, validates, plans and pushes the coder-slots
// Coder template. Only `version` exists so far; the template commands come
// with the slotprov issue.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	root := &cobra.Command{Use: "slotprov", Short: "Renders and pushes the coder-slots Coder template", SilenceUsage: true}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "slotprov %s (%s)\n", version, runtime.Version())
		},
	})
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}
