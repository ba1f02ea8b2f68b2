// Package envpath puts folders first on the PATH of an environment list
// ("KEY=value" entries), for the commands and apps of a release.
package envpath

import (
	"os"
	"slices"
	"strings"
)

// Prepend returns env with dirs first on its PATH (the last PATH entry of
// env wins, as it does for exec); env itself is not changed.
func Prepend(env []string, dirs []string) []string {
	if len(dirs) == 0 {
		return env
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	return append(slices.Clip(env), "PATH="+Join(dirs, path))
}

// Join is the PATH value with dirs first, then path (which may be "").
func Join(dirs []string, path string) string {
	value := strings.Join(dirs, string(os.PathListSeparator))
	if path != "" && value != "" {
		value += string(os.PathListSeparator)
	}
	return value + path
}
