// Command slotprov renders, validates, plans and pushes the coder-slots
// Coder template (see provision/cli).
package main

import (
	"os"

	"github.com/coder-slots/coder-slots/provision/cli"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(cli.Run(version, os.Args[1:], os.Stdout, os.Stderr))
}
