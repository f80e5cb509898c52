package suites_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodrop-dev/nodrop/chaos/nfqueue"
	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/internal/cachedir"
	"github.com/nodrop-dev/nodrop/internal/flight"
	"github.com/nodrop-dev/nodrop/internal/generator"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/internal/sched"
	"github.com/nodrop-dev/nodrop/internal/slots"
	"github.com/nodrop-dev/nodrop/internal/witness"
	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/scenario"
)

// TestMain lets this binary run nodrop's helper processes when asked
// (scenario.Env.HelperProgram): nothing of the suite runs then. The suite
// itself runs with the load generator's priority, as nodrop check does.
// With $NODROP_FAVOUR_SESSION=1 (make e2e FAVOUR_SESSION=1) its session
// is favoured over the cluster too (sched.FavourSession: off by default,
// docs/ci.md), but never when it is one of several processes (make e2e
// PROCS=N): two generators so favoured took the CPU the pods under test
// needed, and lossless configurations lost requests (exec-readiness,
// fresh: its exec probes timed out, every pod unready). A starved
// generator is a run not judged; a starved cluster a wrong verdict.
func TestMain(m *testing.M) {
	if code, ok := nfqueue.Helper(os.Args[1:]); ok {
		os.Exit(code)
	}
	if code, ok := witness.Helper(os.Args[1:]); ok {
		os.Exit(code)
	}
	if code, ok := cluster.CreateHelper(os.Args[1:]); ok {
		os.Exit(code)
	}
	if code, ok := generator.Helper(os.Args[1:]); ok {
		os.Exit(code)
	}
	sched.OneP()
	sched.PreferLoadGenerator()
	if os.Getenv("NODROP_FAVOUR_SESSION") == "1" && !parallel(os.Args[1:]) {
		sched.FavourSession()
	}
	os.Exit(m.Run())
}

// parallel reports whether Ginkgo runs this process as one of several
// (its CLI passes --ginkgo.parallel.total=N).
func parallel(args []string) bool {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, "ginkgo.parallel.total="); ok {
			return v != "1"
		}
		if a == "ginkgo.parallel.total" && i+1 < len(args) {
			return args[i+1] != "1"
		}
	}
	return false
}

func TestSuites(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "nodrop")
}

// env is what every spec gets from the suite's set-up.
type env struct {
	Name       string            `json:"name"`
	ConfigPath string            `json:"configPath"`
	NodeImage  string            `json:"nodeImage"`
	Kubeconfig string            `json:"kubeconfig"`
	NodeIPs    []string          `json:"nodeIPs"`
	Images     map[string]string `json:"images"`
	StateDir   string            `json:"stateDir"`
	Root       string            `json:"root"`
	// LoadSlotsDir and LoadSlots: how many runs send load at once, across
	// every parallel process ($NODROP_LOAD_SLOTS; 0, the default, for no
	// bound).
	LoadSlotsDir string `json:"loadSlotsDir"`
	LoadSlots    int    `json:"loadSlots"`
	// Ingress is the cluster's ingress controller.
	Ingress *scenario.IngressController `json:"ingress"`
}

var (
	suiteEnv   env
	client     kubernetes.Interface
	restConfig *rest.Config
	timeouts   = kube.DefaultTimeouts()
	loadSlots  *slots.Slots
	// stallWitness says of each stall of the load generator whether the
	// machine stood still too (scenario.Env.Witness); stallTrace, with
	// $NODROP_STALL_TRACE (make e2e STALL_TRACE=dir), keeps the execution
	// trace around each long one.
	stallWitness *witness.Witness
	stallTrace   *flight.Recorder
)

func getenv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func stateDir() string {
	d, err := cachedir.Dir()
	Expect(err).NotTo(HaveOccurred())
	return d
}

// The cluster comes up once, on the first process, from whatever is
// cached: the node image, the cluster itself when it was made from the
// same config and image, the sample images.
var _ = SynchronizedBeforeSuite(func(ctx SpecContext) []byte {
	wd, err := os.Getwd()
	Expect(err).NotTo(HaveOccurred())
	root, err := images.SourceRoot(wd)
	Expect(err).NotTo(HaveOccurred())
	state := stateDir()
	r, err := cluster.Setup(ctx, cluster.SetupOptions{
		Options: cluster.Options{
			Name:       getenv("NODROP_CLUSTER", cluster.DefaultName),
			ConfigPath: os.Getenv("NODROP_KIND_CONFIG"), // "": nodrop's own, built in
			NodeImage:  os.Getenv("NODROP_NODE_IMAGE"),
			StateDir:   state,
			// The suite owns its cluster: one made from an older config or
			// node image is replaced, and the log says so.
			Recreate: true,
			Log:      progress.New(os.Stderr, false),
			Program:  helperProgram(),
		},
		// The SidecarSet hot-upgrade specs need OpenKruise, the proxy
		// specs an ingress controller.
		WithKruise:  true,
		WithIngress: true,
	})
	Expect(err).NotTo(HaveOccurred(), "bringing the cluster up")
	e := env{Name: r.Name, ConfigPath: r.ConfigPath, NodeImage: r.NodeImage, Kubeconfig: r.Kubeconfig, NodeIPs: r.NodeIPs, Images: r.Images, StateDir: state, Root: root, Ingress: r.Ingress}
	if n := getenv("NODROP_LOAD_SLOTS", "0"); n != "0" {
		e.LoadSlots, err = strconv.Atoi(n)
		Expect(err).NotTo(HaveOccurred(), "NODROP_LOAD_SLOTS")
		e.LoadSlotsDir, err = os.MkdirTemp("", "nodrop-load-slots-")
		Expect(err).NotTo(HaveOccurred())
	}
	out, err := json.Marshal(e)
	Expect(err).NotTo(HaveOccurred())
	return out
}, func(ctx context.Context, data []byte) {
	Expect(json.Unmarshal(data, &suiteEnv)).To(Succeed())
	rc, err := clientcmd.BuildConfigFromFlags("", suiteEnv.Kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	rc.QPS, rc.Burst = 50, 100
	restConfig = rc
	client, err = kubernetes.NewForConfig(rc)
	Expect(err).NotTo(HaveOccurred())
	if suiteEnv.LoadSlots > 0 {
		loadSlots, err = slots.Open(suiteEnv.LoadSlotsDir, suiteEnv.LoadSlots)
		Expect(err).NotTo(HaveOccurred())
	}
	stallWitness, err = witness.Spawn(ctx, helperProgram())
	Expect(err).NotTo(HaveOccurred(), "starting the witness beside the load generator")
	if dir := os.Getenv("NODROP_STALL_TRACE"); dir != "" {
		stallTrace, err = flight.Start(dir)
		Expect(err).NotTo(HaveOccurred())
	}
}, NodeTimeout(45*time.Minute)) // a new machine builds the node image, Kruise and Traefik here: ≈ 20–25 min

// A spec starts on a cluster that answers. One that stopped answering
// (its API server down, its node container gone) ends the suite with that
// one reason, instead of failing every spec after it for it.
var _ = BeforeEach(func(ctx SpecContext) {
	if err := cluster.Answers(ctx, suiteEnv.Name, client, time.Minute); err != nil {
		AbortSuite("the suite's cluster stopped answering, so no spec after this one can run: " + err.Error())
	}
}, NodeTimeout(2*time.Minute))

var _ = SynchronizedAfterSuite(func() {
	Expect(stallWitness.Close()).To(Succeed())
	stallTrace.Stop()
}, func() {
	if suiteEnv.LoadSlotsDir != "" {
		Expect(os.RemoveAll(suiteEnv.LoadSlotsDir)).To(Succeed())
	}
})
