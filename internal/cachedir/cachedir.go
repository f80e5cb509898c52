// Package cachedir is the one place that knows where nodrop keeps what
// it builds: $NODROP_CACHE, else nodrop/ in the user's cache directory
// (~/.cache/nodrop), outside any clone so builds survive a fresh checkout.
package cachedir

import (
	"fmt"
	"os"
	"path/filepath"
)

// Env names the variable that moves the cache.
const Env = "NODROP_CACHE"

// Dir returns the cache directory; it does not create it.
func Dir() (string, error) {
	if d := os.Getenv(Env); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: set %s (%w)", Env, err)
	}
	return filepath.Join(d, "nodrop"), nil
}
