// Package tfmirror finds the local Terraform provider mirror that
// `make tf-mirror` (scripts/tf-mirror.sh) builds under the repository's
// .cache/, for the tests that run the real Terraform.
package tfmirror

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Dir is the mirror's folder, relative to the repository root.
const Dir = ".cache/tf-mirror"

// CLIConfig returns the mirror's Terraform CLI config file, found from the
// working directory up to the repository root (the folder with go.mod).
func CLIConfig() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("tfmirror: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			rc := filepath.Join(dir, Dir, "terraformrc")
			if _, err := os.Stat(rc); err != nil {
				return "", fmt.Errorf("tfmirror: no provider mirror at %s: run `make tf-mirror` first", filepath.Join(dir, Dir))
			}
			return rc, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("tfmirror: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Require returns the mirror's CLI config or fails the test, saying to run
// `make tf-mirror`.
func Require(t testing.TB) string {
	t.Helper()
	rc, err := CLIConfig()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}
