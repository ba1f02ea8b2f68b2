// Command slotagent runs inside a Coder workspace as its entrypoint: it
// supervises the Coder agent, the admin panel and five deployment slots.
package main

import (
	"os"

	"github.com/coder-slots/coder-slots/agent/cli"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(cli.Main(version, cli.Args(os.Args)))
}
