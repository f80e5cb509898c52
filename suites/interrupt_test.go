package suites_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodrop-dev/nodrop/suites"
)

// Ctrl-C in the middle of a spec must undo what the spec made: the suite
// binary, interrupted while load runs through a rollout, deletes the
// spec's namespace before it exits.
var _ = Describe("An interrupted run", suites.Cluster, Serial, func() {
	It("leaves no namespace behind when the suite gets SIGINT during a rollout", func(ctx SpecContext) {
		const spec = `baseline-good, keepalive: loses no requests`
		// Only what the nested run makes counts: a namespace an earlier,
		// killed run left behind is not this run's.
		before := map[string]bool{}
		for _, n := range nestedNamespaces(ctx) {
			before[n] = true
		}
		made := func() []string {
			var out []string
			for _, n := range nestedNamespaces(ctx) {
				if !before[n] {
					out = append(out, n)
				}
			}
			return out
		}
		cmd := exec.CommandContext(ctx, os.Args[0],
			"-ginkgo.label-filter", "rollout", "-ginkgo.focus", spec, "-ginkgo.v", "-ginkgo.no-color")
		// Its summary goes elsewhere, not over this run's.
		cmd.Env = append(os.Environ(), "NODROP_REPORT_DIR="+GinkgoT().TempDir())
		out, err := cmd.StdoutPipe()
		Expect(err).NotTo(HaveOccurred())
		cmd.Stderr = GinkgoWriter
		Expect(cmd.Start()).To(Succeed())
		DeferCleanup(func() { cmd.Process.Kill() })

		By("waiting until the nested run's rollout is under way")
		sc := bufio.NewScanner(out)
		var seen []string
		for sc.Scan() {
			line := sc.Text()
			seen = append(seen, line)
			if strings.Contains(line, "rollout restart under") {
				break
			}
		}
		Expect(sc.Err()).NotTo(HaveOccurred())
		Expect(seen[len(seen)-1]).To(ContainSubstring("rollout restart under"), "the nested run never reached its rollout:\n%s", strings.Join(seen, "\n"))
		Expect(made()).NotTo(BeEmpty(), "the nested spec's namespace exists while it runs")

		By("sending SIGINT, as Ctrl-C does")
		Expect(cmd.Process.Signal(syscall.SIGINT)).To(Succeed())
		go func() {
			for sc.Scan() {
				GinkgoWriter.Println(sc.Text())
			}
		}()
		err = cmd.Wait()
		Expect(err).To(HaveOccurred(), "an interrupted run must not exit 0")

		By("checking that the nested spec cleaned up")
		Expect(made()).To(BeEmpty(), "namespaces left behind by the interrupted run")
	}, SpecTimeout(6*time.Minute))
})

// nestedNamespaces are the namespaces of baseline-good rollout specs that
// exist now (this run has none of its own while this spec runs; one left
// by an earlier run that was killed may exist).
func nestedNamespaces(ctx context.Context) []string {
	list, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=nodrop"})
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for _, n := range list.Items {
		if strings.HasPrefix(n.Name, "rollout-baseline-good-") {
			out = append(out, n.Name)
		}
	}
	return out
}
