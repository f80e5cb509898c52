package bench

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"

	"github.com/nodrop-dev/nodrop/internal/filename"
)

// Pictures draws the overview and a picture per row into dir/plots and
// returns each row's picture, relative to dir ("" when the row has no
// judged run to show).
func (r *Results) Pictures(dir string) (overview string, perRow []string, err error) {
	plots := filepath.Join(dir, "plots")
	if err := os.MkdirAll(plots, 0o755); err != nil {
		return "", nil, err
	}
	write := func(name string, draw func(io.Writer) error) error {
		var b bytes.Buffer
		if err := draw(&b); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(plots, name), b.Bytes(), 0o644)
	}
	if err := write("overview.png", func(w io.Writer) error { return PlotOverview(w, r.Rows) }); err != nil {
		return "", nil, fmt.Errorf("drawing the overview: %w", err)
	}
	overview = "plots/overview.png"
	for i, row := range r.Rows {
		run, ok := r.pictured(row)
		if !ok {
			perRow = append(perRow, "")
			continue
		}
		name := fmt.Sprintf("%02d-%s-%s.png", i+1, fileSafe(row.Config), fileSafe(row.Load))
		if err := write(name, func(w io.Writer) error { return PlotRun(w, run) }); err != nil {
			return "", nil, fmt.Errorf("drawing %s, %s: %w", row.Config, row.Load, err)
		}
		perRow = append(perRow, "plots/"+name)
	}
	return overview, perRow, nil
}

func fileSafe(s string) string { return filename.Safe(s) }

// htmlRow is a row as the page shows it.
type htmlRow struct {
	Row
	Classes, LossPct, Outage, Picture string
	PicturedRun                       int
}

// WriteHTML writes index.html: the table, sortable by any column, and the
// pictures, readable offline (no script or style from elsewhere).
func (r *Results) WriteHTML(w io.Writer, overview string, pictures []string) error {
	var rows []htmlRow
	for i, row := range r.Rows {
		h := htmlRow{Row: row, Classes: classes(row.LostByClass), LossPct: pct(row.LossPct), Outage: outage(row)}
		if i < len(pictures) {
			h.Picture = pictures[i]
		}
		if run, ok := r.pictured(row); ok {
			h.PicturedRun = run.Run
		}
		rows = append(rows, h)
	}
	var flaps []string
	for _, row := range r.Rows {
		if row.Flaps() {
			flaps = append(flaps, r.flapLine(row))
		}
	}
	return page.Execute(w, map[string]any{
		"Results": r, "Rows": rows, "Overview": overview, "Flaps": flaps, "Each": r.runsEach(),
	})
}

// WriteAll writes results.md, results.json, the pictures and index.html
// into dir.
func (r *Results) WriteAll(dir string) error {
	if err := r.WriteFiles(dir); err != nil {
		return err
	}
	if len(r.Rows) == 0 {
		return nil
	}
	overview, pictures, err := r.Pictures(dir)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := r.WriteHTML(&b, overview, pictures); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "index.html"), b.Bytes(), 0o644)
}

var page = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nodrop bench</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f0f0f0; cursor: pointer; user-select: none; white-space: nowrap; }
th.asc::after { content: " ▲"; } th.desc::after { content: " ▼"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.lossy td.lost { color: #b00; font-weight: bold; }
tr.unexpected td { background: #fde0e0; }
figure { margin: 1.5em 0; } figcaption { font-weight: bold; }
img { max-width: 100%; border: 1px solid #ddd; }
</style>
</head>
<body>
<h1>nodrop bench</h1>
<p>{{len .Rows}} configurations × loads, {{.Each}}{{if .Results.Interrupted}}, <strong>interrupted: not every run ran</strong>{{end}}. Click a column to sort.</p>
<table id="results">
<thead><tr>
<th data-type="text">configuration</th><th data-type="text">load</th><th data-type="num">runs</th><th data-type="num">requests</th><th data-type="num">lost</th><th data-type="text">lost by class</th><th data-type="num">loss %</th><th data-type="num">longest outage</th><th data-type="num">settled in (s)</th><th data-type="num">p99 before (ms)</th><th data-type="num">p99 during (ms)</th><th data-type="num">new conns per run</th><th data-type="num">lossless runs</th><th data-type="text">expected</th><th data-type="num">as expected</th>
</tr></thead>
<tbody>
{{range .Rows}}<tr class="{{if gt .Lost 0}}lossy{{end}}{{if ne .AsExpected .Runs}} unexpected{{end}}">
<td><a href="#{{.Picture}}">{{.Config}}</a></td><td>{{.Load}}</td><td class="num">{{.Runs}}</td><td class="num">{{.Requests}}</td><td class="num lost">{{.Lost}}</td><td>{{.Classes}}</td><td class="num" data-value="{{printf "%.6f" .Row.LossPct}}">{{.LossPct}}</td><td class="num" data-value="{{.LongestOutageRequests}}">{{.Outage}}</td><td class="num">{{printf "%.1f" .TookS}}</td><td class="num">{{printf "%.1f" .Before.P99}}</td><td class="num">{{printf "%.1f" .During.P99}}</td><td class="num">{{printf "%.0f" .NewConnsPerRun}}</td><td class="num" data-value="{{.LosslessRuns}}">{{.LosslessRuns}}/{{.Judged}}</td><td>{{if .Expected}}{{.Expected}}{{else}}—{{end}}</td><td class="num" data-value="{{.AsExpected}}">{{.AsExpected}}/{{.Runs}}</td>
</tr>
{{end}}</tbody>
</table>
{{if .Flaps}}<h2>Runs that disagreed</h2><ul>{{range .Flaps}}<li>{{.}}</li>{{end}}</ul>{{else}}<p>Every configuration gave the same verdict in each of its judged runs.</p>{{end}}
<h2>Overview</h2>
<img src="{{.Overview}}" alt="requests lost per run, by configuration">
<h2>Each configuration</h2>
<p>Requests per 100 ms by the time they were sent, stacked by outcome, with what Kubernetes did as vertical lines. Each picture shows the run that lost most.</p>
{{range .Rows}}{{if .Picture}}<figure id="{{.Picture}}"><figcaption>{{.Config}}, {{.Load}} (run {{.PicturedRun}})</figcaption><img src="{{.Picture}}" alt="timeline of {{.Config}}, {{.Load}}"></figure>
{{end}}{{end}}
<script>
(function () {
  var table = document.getElementById("results");
  var heads = table.tHead.rows[0].cells;
  function value(td, type) {
    var v = td.getAttribute("data-value");
    if (v === null) v = td.textContent.trim();
    if (type === "num") { var n = parseFloat(v); return isNaN(n) ? -Infinity : n; }
    return v.toLowerCase();
  }
  function sortBy(col, dir) {
    var type = heads[col].getAttribute("data-type");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a.cells[col], type), y = value(b.cells[col], type);
      return (x < y ? -1 : x > y ? 1 : 0) * (dir === "desc" ? -1 : 1);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var i = 0; i < heads.length; i++) heads[i].className = i === col ? dir : "";
  }
  for (var i = 0; i < heads.length; i++) (function (col) {
    heads[col].onclick = function () {
      var dir = heads[col].className === "asc" ? "desc" : "asc";
      sortBy(col, dir);
      history.replaceState(null, "", "#sort=" + col + "-" + dir);
    };
  })(i);
  var m = /^#sort=(\d+)-(asc|desc)$/.exec(location.hash);
  if (m && +m[1] < heads.length) sortBy(+m[1], m[2]);
  // For the page's own check: how many pictures the browser drew.
  window.addEventListener("load", function () {
    var imgs = document.images, ok = 0;
    for (var i = 0; i < imgs.length; i++) if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
    document.body.setAttribute("data-pictures-drawn", ok + "/" + imgs.length);
  });
})();
</script>
</body>
</html>
`))
