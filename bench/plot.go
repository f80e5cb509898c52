package bench

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
	"github.com/nodrop-dev/nodrop/scenario"
)

// Colours of the outcomes: answered in grey, each loss class its own.
var classColour = map[loadgen.Class]color.RGBA{
	loadgen.HTTP5xx:   {R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	loadgen.HTTPOther: {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	loadgen.Refused:   {R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	loadgen.Reset:     {R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	loadgen.EOF:       {R: 0xe3, G: 0x77, B: 0xc2, A: 0xff},
	loadgen.Timeout:   {R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	loadgen.Other:     {R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
}

var answeredColour = color.RGBA{R: 0xc8, G: 0xe6, B: 0xc9, A: 0xff}

// marks are the timeline's events drawn on a run's picture, each kind in
// its colour and dash: what Kubernetes did, and what the app said.
var marks = []struct {
	kind   probes.Kind
	label  string
	colour color.RGBA
	dashes []vg.Length
}{
	{probes.Disruption, "disruption starts", color.RGBA{A: 0xff}, nil},
	{probes.PodDeleting, "pod deleted (preStop, then SIGTERM)", color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, []vg.Length{vg.Points(4), vg.Points(2)}},
	{probes.EndpointTerminating, "endpoint terminating", color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, []vg.Length{vg.Points(1), vg.Points(2)}},
	{probes.EndpointRemoved, "endpoint removed", color.RGBA{R: 0x17, G: 0xbe, B: 0xcf, A: 0xff}, []vg.Length{vg.Points(1), vg.Points(2)}},
	{probes.ContainerTerminated, "container exited (SIGTERM handled, or SIGKILL)", color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff}, []vg.Length{vg.Points(6), vg.Points(3)}},
	{probes.PodReady, "new pod ready", color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, []vg.Length{vg.Points(2), vg.Points(2)}},
	{probes.FaultStart, "fault injected", color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, nil},
	{probes.FaultEnd, "fault undone", color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, []vg.Length{vg.Points(3), vg.Points(3)}},
}

// PlotRun draws one run as a PNG: requests per 100 ms by the time they
// were sent, stacked by outcome (answered, then each loss class), with the
// timeline's events as vertical lines.
func PlotRun(w io.Writer, run scenario.Record) error {
	r := run.Report
	if r == nil || len(r.Timeline) == 0 {
		return fmt.Errorf("%s, %s, run %d: no timeline to draw", run.Config, run.Load, run.Run)
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s, %s load, run %d: %s (%d of %d lost)", run.Config, run.Load, run.Run, run.Verdict, r.Lost, r.Total)
	p.X.Label.Text = "seconds from the start of load"
	p.Y.Label.Text = fmt.Sprintf("requests per %s", loadgen.BucketWidth)
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.YOffs = -vg.Points(2)

	width := loadgen.BucketWidth.Seconds()
	lower := make([]float64, len(r.Timeline))
	layers := 0
	layer := func(name string, c color.Color, value func(loadgen.Bucket) int) error {
		upper := make([]float64, len(lower))
		any := false
		for i, b := range r.Timeline {
			v := value(b)
			upper[i] = lower[i] + float64(v)
			any = any || v > 0
		}
		if any {
			poly, err := plotter.NewPolygon(stepBand(lower, upper, width))
			if err != nil {
				return err
			}
			poly.Color, poly.LineStyle.Width = c, 0
			p.Add(poly)
			p.Legend.Add(name, poly)
			layers++
		}
		lower = upper
		return nil
	}
	if err := layer("answered", answeredColour, func(b loadgen.Bucket) int { return b.OK }); err != nil {
		return err
	}
	for _, c := range loadgen.LossClasses {
		if r.LostByClass[c] == 0 {
			continue
		}
		if err := layer("lost: "+string(c), classColour[c], func(b loadgen.Bucket) int { return b.LostByClass[c] }); err != nil {
			return err
		}
	}
	top := 0.0
	for _, v := range lower {
		top = math.Max(top, v)
	}
	// Room above the bars for the legend, a line per entry.
	entries := layers
	for _, m := range marks {
		for _, e := range run.Events {
			if e.Kind == m.kind {
				entries++
				break
			}
		}
	}
	top *= 1.1 + 0.075*float64(entries)
	for _, m := range marks {
		var xs []float64
		for _, e := range run.Events {
			if e.Kind == m.kind {
				xs = append(xs, r.Offset(e.At).Seconds())
			}
		}
		if len(xs) == 0 {
			continue
		}
		sort.Float64s(xs)
		var first *plotter.Line
		for _, x := range xs {
			l, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: top}})
			if err != nil {
				return err
			}
			l.LineStyle = draw.LineStyle{Color: m.colour, Width: vg.Points(1.2), Dashes: m.dashes}
			p.Add(l)
			if first == nil {
				first = l
			}
		}
		p.Legend.Add(m.label, first)
	}
	p.Y.Min, p.Y.Max = 0, top
	p.X.Min, p.X.Max = 0, float64(len(r.Timeline))*width
	p.X.Tick.Marker = secondsTicks{}
	wt, err := p.WriterTo(11*vg.Inch, 4.5*vg.Inch, "png")
	if err != nil {
		return err
	}
	_, err = wt.WriteTo(w)
	return err
}

// stepBand is the outline of the band between two step functions of
// buckets width wide: along the upper edge, then back along the lower.
func stepBand(lower, upper []float64, width float64) plotter.XYs {
	xys := make(plotter.XYs, 0, 4*len(upper))
	for i, v := range upper {
		x := float64(i) * width
		xys = append(xys, plotter.XY{X: x, Y: v}, plotter.XY{X: x + width, Y: v})
	}
	for i := len(lower) - 1; i >= 0; i-- {
		x := float64(i) * width
		xys = append(xys, plotter.XY{X: x + width, Y: lower[i]}, plotter.XY{X: x, Y: lower[i]})
	}
	return xys
}

// PlotOverview draws the rows side by side as a PNG: the mean requests
// lost per judged run of each configuration and load, labelled with how
// many runs were lossless.
func PlotOverview(w io.Writer, rows []Row) error {
	if len(rows) == 0 {
		return fmt.Errorf("no rows to draw")
	}
	p := plot.New()
	p.Title.Text = "requests lost per run (mean over the judged runs)"
	p.X.Label.Text = "lost per run"
	vals := make(plotter.Values, len(rows))
	names := make([]string, len(rows))
	// Top to bottom in the table's order.
	for i, row := range rows {
		j := len(rows) - 1 - i
		if row.Judged > 0 {
			vals[j] = float64(row.Lost) / float64(row.Judged)
		}
		names[j] = fmt.Sprintf("%s, %s (%d/%d lossless)", row.Config, row.Load, row.LosslessRuns, row.Judged)
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(10))
	if err != nil {
		return err
	}
	bars.Horizontal = true
	bars.Color = classColour[loadgen.HTTP5xx]
	bars.LineStyle.Width = 0
	p.Add(bars)
	// The figure beside each bar: 15 lost per run is a sliver next to
	// 7,000, and a sliver is not a reading.
	var at plotter.XYs
	var labels []string
	most := 0.0
	for i, v := range vals {
		at = append(at, plotter.XY{X: v, Y: float64(i)})
		labels = append(labels, fmt.Sprintf("%.1f", v))
		most = math.Max(most, v)
	}
	figures, err := plotter.NewLabels(plotter.XYLabels{XYs: at, Labels: labels})
	if err != nil {
		return err
	}
	figures.Offset = vg.Point{X: vg.Points(4), Y: -vg.Points(4)}
	p.Add(figures)
	p.NominalY(names...)
	p.X.Min, p.X.Max = 0, math.Max(1, most*1.15)
	h := vg.Length(len(rows))*vg.Points(16) + vg.Inch
	wt, err := p.WriterTo(9*vg.Inch, h, "png")
	if err != nil {
		return err
	}
	_, err = wt.WriteTo(w)
	return err
}

// pictured picks the run a row's picture shows: the one that lost most
// (the mechanism at its clearest), else the first judged one.
func (r *Results) pictured(row Row) (scenario.Record, bool) {
	var best scenario.Record
	found := false
	for _, run := range r.Runs {
		if run.Config != row.Config || run.Load != row.Load || run.Report == nil || len(run.Report.Timeline) == 0 {
			continue
		}
		if !found || run.Report.Lost > best.Report.Lost {
			best, found = run, true
		}
	}
	return best, found
}

// secondsTicks marks every second, labelled every 2 s (every 5 s past
// 30 s, every 10 s past 60 s).
type secondsTicks struct{}

func (secondsTicks) Ticks(min, max float64) []plot.Tick {
	step := 2
	switch {
	case max-min > 60:
		step = 10
	case max-min > 30:
		step = 5
	}
	var ticks []plot.Tick
	for s := int(math.Ceil(min)); float64(s) <= max; s++ {
		t := plot.Tick{Value: float64(s)}
		if s%step == 0 {
			t.Label = fmt.Sprint(s)
		}
		ticks = append(ticks, t)
	}
	return ticks
}
