package config

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
)

//go:embed example.yaml
var example []byte

// Example is a commented slots.yaml with every key and its default.
func Example() []byte { return example }

// WriteExample writes Example to path; it refuses to overwrite a file
// unless force is set.
func WriteExample(path string, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("init: %s exists (use --force to overwrite it)", path)
	}
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if _, err := f.Write(example); err != nil {
		f.Close()
		return fmt.Errorf("init: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("init: write %s: %w", path, err)
	}
	return nil
}
