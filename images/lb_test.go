package images_test

import (
	"os/exec"
	"strings"
	"testing"
)

// Every mode's configuration, as lb writes it, passes the check of the
// proxy that reads it, in the image, as the non-root user the proxy
// specs run it as.
func TestLBConfigurationsAreValid(t *testing.T) {
	ref := buildAll(t)["lb"]
	for _, tc := range []struct{ mode, check string }{
		{"nginx-reload", "nginx -e stderr -t -c /run/lb/conf"},
		{"nginx-gray", "nginx -e stderr -t -c /run/lb/conf"},
		{"haproxy-reload", "haproxy -c -f /run/lb/conf"},
		{"haproxy-sf", "haproxy -c -f /run/lb/conf"},
		{"haproxy-runtime", "haproxy -c -f /run/lb/conf"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			script := "/lb -mode " + tc.mode + " -print-config 10.244.0.7:8080,10.244.0.9:8080 > /run/lb/conf && cat /run/lb/conf && " + tc.check
			out, err := exec.Command("docker", "run", "--rm", "--user", "65534", "--tmpfs", "/run/lb:uid=65534",
				"--entrypoint", "sh", ref, "-c", script).CombinedOutput()
			if err != nil {
				t.Fatalf("%v:\n%s", err, out)
			}
			for _, want := range []string{"10.244.0.7:8080", "10.244.0.9:8080"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("configuration lacks backend %s:\n%s", want, out)
				}
			}
		})
	}
}
