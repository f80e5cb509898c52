package filename

import "testing"

func TestSafe(t *testing.T) {
	for in, want := range map[string]string{
		"proxy HotUpgrade drain +probe":      "proxy-HotUpgrade-drain-probe",
		"nginx-init USR2, long-lived":        "nginx-init-USR2-long-lived",
		"../../etc/passwd":                   "..-..-etc-passwd",
		"rollout [It] baseline-good (fresh)": "rollout-It-baseline-good-fresh",
	} {
		if got := Safe(in); got != want {
			t.Errorf("Safe(%q) = %q, want %q", in, got, want)
		}
	}
}
