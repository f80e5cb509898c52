package nodrop

import (
	"io/fs"
	"os/exec"
	"strings"
	"testing"
)

// Every package of nodrop's that an image's program imports is embedded:
// a binary builds the images from Sources alone, wherever it runs.
func TestSourcesHoldWhatTheImagesImport(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}",
		"./images/app", "./images/init", "./images/proxy", "./images/lb").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const module = "github.com/nodrop-dev/nodrop/"
	for _, p := range strings.Fields(string(out)) {
		dir, ok := strings.CutPrefix(p, module)
		if !ok {
			continue
		}
		if _, err := fs.Stat(Sources, dir); err != nil {
			t.Errorf("an image imports %s, which Sources does not embed (sources.go)", p)
		}
	}
}
