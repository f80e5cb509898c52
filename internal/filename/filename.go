// Package filename makes names (a configuration, a spec's text) safe as
// file names: the bench's pictures and the suite's kept results.
package filename

import (
	"regexp"
	"strings"
)

var unsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Safe replaces each run of characters a file name should not carry
// with a dash, and trims dashes from both ends: "proxy HotUpgrade
// drain" → "proxy-HotUpgrade-drain".
func Safe(s string) string { return strings.Trim(unsafe.ReplaceAllString(s, "-"), "-") }
