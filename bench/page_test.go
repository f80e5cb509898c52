package bench

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/scenario"
)

func TestPicturesArePNGs(t *testing.T) {
	runs := recorded(t)
	r := &Results{Version: FormatVersion, RunsPerConfig: 3, Runs: runs, Rows: Summarize(runs)}
	dir := t.TempDir()
	overview, pictures, err := r.Pictures(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]string{overview}, pictures...) {
		if p == "" {
			t.Fatalf("a row of recorded runs has no picture: %q", pictures)
		}
		f, err := os.Open(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 100 || inked(img) < 0.02 {
			t.Errorf("%s: %v, %.1f%% drawn on; want a picture", p, b, 100*inked(img))
		}
	}
	if err := PlotRun(&bytes.Buffer{}, scenario.Record{Config: "x", Load: "fresh"}); err == nil {
		t.Errorf("a run with no timeline must not draw")
	}
}

// inked is the share of pixels that are not white.
func inked(img image.Image) float64 {
	b := img.Bounds()
	n := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r < 0xf000 || g < 0xf000 || bl < 0xf000 {
				n++
			}
		}
	}
	return float64(n) / float64(b.Dx()*b.Dy())
}

// chromium finds a headless Chromium. CI's set-up installs one (make
// chromium); elsewhere the page check needs one to run.
func chromium(t *testing.T) string {
	for _, c := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium on CI's machine: make chromium installs it")
	}
	t.Skip("no Chromium here (make chromium installs Debian's): the page is not looked at")
	return ""
}

// The page as a person sees it, in a real browser, offline: every picture
// drawn, the table sorted by the column asked for, and a screenshot that
// is not blank.
func TestPageInABrowser(t *testing.T) {
	browser := chromium(t)
	runs := recorded(t)
	r := &Results{Version: FormatVersion, RunsPerConfig: 3, Runs: runs, Rows: Summarize(runs)}
	dir := t.TempDir()
	if err := r.WriteAll(dir); err != nil {
		t.Fatal(err)
	}
	page := "file://" + filepath.Join(dir, "index.html")
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, browser, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
			"--user-data-dir=" + filepath.Join(dir, "profile"), "--virtual-time-budget=5000"}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %v: %v\n%s", browser, args, err, errb.String())
		}
		return out.String()
	}

	// Sorted by "lost" (column 4), most first.
	dom := run("--dump-dom", page+"#sort=4-desc")
	want := fmt.Sprintf(`data-pictures-drawn="%d/%d"`, len(r.Rows)+1, len(r.Rows)+1)
	if !strings.Contains(dom, want) {
		m := regexp.MustCompile(`data-pictures-drawn="[^"]*"`).FindString(dom)
		t.Errorf("the browser drew %q, want %s (every picture, offline)", m, want)
	}
	most := r.Rows[0]
	for _, row := range r.Rows {
		if row.Lost > most.Lost {
			most = row
		}
	}
	cells := regexp.MustCompile(`(?s)<tbody>\s*<tr[^>]*>\s*<td><a[^>]*>([^<]*)</a></td><td>([^<]*)</td>`).FindStringSubmatch(dom)
	if cells == nil || cells[1] != most.Config || cells[2] != most.Load {
		t.Errorf("sorted by lost, most first: first row %q, want %s, %s", cells, most.Config, most.Load)
	}

	shot := filepath.Join(dir, "page.png")
	run("--screenshot="+shot, "--window-size=1400,2400", page)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1400 || inked(img) < 0.05 {
		t.Errorf("screenshot %v, %.1f%% drawn on; want the page", b, 100*inked(img))
	}
	if keep := os.Getenv("NODROP_PAGE_SCREENSHOT"); keep != "" {
		raw, _ := os.ReadFile(shot)
		os.WriteFile(keep, raw, 0o644)
	}
}
