// Package shell writes text for sh to read back as the same words: the
// commands the agent prints for a user to copy (it never runs a shell on
// them itself).
package shell

import (
	"regexp"
	"strings"
)

var safe = regexp.MustCompile(`^[A-Za-z0-9_./@%+=:,-]+$`)

// Quote quotes s for sh when it contains anything but plain characters.
func Quote(s string) string {
	if safe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
