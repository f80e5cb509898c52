package loadgen_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"golang.org/x/sys/unix"

	"github.com/nodrop-dev/nodrop/loadgen"
)

// benchServerEnv makes the test binary serve HTTP instead of running
// tests, so the benchmark's server runs in its own process, on its own core.
const benchServerEnv = "NODROP_BENCH_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(benchServerEnv) != "" {
		serveBench()
		return
	}
	os.Exit(m.Run())
}

func serveBench() {
	pinToCPU(runtime.NumCPU() - 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
}

func pinToCPU(cpu int) {
	var set unix.CPUSet
	set.Set(cpu)
	unix.SchedSetaffinity(0, &set)
}

// startBenchServer runs the server process and returns its URL.
func startBenchServer(b *testing.B) string {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), benchServerEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	return "http://" + strings.TrimSpace(addr) + "/"
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type step struct {
	rate       int
	total      int
	lost       int
	class      loadgen.Class
	achieved   float64
	cpuPerReq  time.Duration
	vegetaCPU  time.Duration
	vegetaErrs int
}

// BenchmarkLoadgenOneCore raises the rate on one client core (the server
// runs on another) and reports the highest rate nodrop sustains with 0
// lost and its achieved rate within 1 % of the target, with nodrop's and
// raw vegeta's CPU time per request at each rate.
func BenchmarkLoadgenOneCore(b *testing.B) {
	if runtime.NumCPU() < 2 {
		b.Skip("needs 2 CPUs: one for the load generator, one for the server")
	}
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	pinToCPU(0)
	url := startBenchServer(b)
	const stepFor = 2 * time.Second

	var steps []step
	best := step{}
	for i := 0; i < b.N; i++ {
		for _, rate := range []int{1000, 2000, 4000, 8000, 12000, 16000, 20000, 24000, 28000} {
			s := step{rate: rate}
			c0 := cpuTime()
			r, err := loadgen.Run(context.Background(), loadgen.Config{Targets: []string{url}, Rate: rate, Duration: stepFor})
			if err != nil {
				b.Fatal(err)
			}
			s.cpuPerReq = (cpuTime() - c0) / time.Duration(max(1, r.Total))
			s.total, s.lost, s.class, s.achieved = r.Total, r.Lost, r.DominantClass(), r.RateAchieved

			c0 = cpuTime()
			n, errs := rawVegeta(url, rate, stepFor)
			s.vegetaCPU = (cpuTime() - c0) / time.Duration(max(1, n))
			s.vegetaErrs = errs
			steps = append(steps, s)
			if s.lost > 0 || rateError(s) >= 1 {
				break
			}
			best = s
		}
	}
	b.StopTimer()
	b.Logf("\n%s", formatSteps(steps))
	b.ReportMetric(float64(best.rate), "max_lossless_rps")
	b.ReportMetric(rateError(best), "rate_err_%")
	b.ReportMetric(float64(best.cpuPerReq.Microseconds()), "nodrop_cpu_us/req")
	b.ReportMetric(float64(best.vegetaCPU.Microseconds()), "vegeta_cpu_us/req")
	if best.vegetaCPU > 0 {
		b.ReportMetric(float64(best.cpuPerReq)/float64(best.vegetaCPU), "cpu_ratio")
	}
}

func rateError(s step) float64 {
	return 100 * (float64(s.rate) - s.achieved) / float64(s.rate)
}

// rawVegeta runs vegeta's attacker as a plain user would (its default
// transport settings), on a transport the benchmark can close afterwards so
// one step's idle connections do not burden the next.
func rawVegeta(url string, rate int, d time.Duration) (n, errs int) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: vegeta.DefaultConnections,
	}
	defer tr.CloseIdleConnections()
	atk := vegeta.NewAttacker(vegeta.Client(&http.Client{Transport: tr, Timeout: loadgen.DefaultTimeout}), vegeta.MaxBody(0))
	tgt := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url})
	for res := range atk.Attack(tgt, vegeta.ConstantPacer{Freq: rate, Per: time.Second}, d, "raw") {
		n++
		if res.Error != "" {
			errs++
		}
	}
	return n, errs
}

func formatSteps(steps []step) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "| target rps | sent | lost (mostly) | achieved rps | rate error | nodrop CPU/req | vegeta CPU/req | vegeta errors |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range steps {
		fmt.Fprintf(&sb, "| %d | %d | %d %s | %.0f | %.2f %% | %s | %s | %d |\n",
			s.rate, s.total, s.lost, s.class, s.achieved, rateError(s), s.cpuPerReq, s.vegetaCPU, s.vegetaErrs)
	}
	return sb.String()
}
