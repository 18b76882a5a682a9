package bench

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"strconv"
	"strings"
)

var (
	colWeir    = color.RGBA{0x1f, 0x77, 0xb4, 0xff}
	colFlink   = color.RGBA{0xff, 0x7f, 0x0e, 0xff}
	colCeiling = color.RGBA{0x88, 0x88, 0x88, 0xff}
	colAxis    = color.RGBA{0x33, 0x33, 0x33, 0xff}
	colGrid    = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
)

// glyphs is a 3x5 pixel font for the labels above the bars: each glyph is
// five rows of three bits, most significant bit on the left.
var glyphs = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7},
	'4': {5, 5, 7, 1, 1}, '5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 1, 1},
	'8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7}, '.': {0, 0, 0, 0, 2}, 'k': {4, 5, 6, 5, 5},
	'M': {5, 7, 7, 5, 5}, 'A': {2, 5, 7, 5, 5}, 'C': {7, 4, 4, 4, 7}, 'E': {7, 4, 6, 4, 7},
	'F': {7, 4, 6, 4, 4}, 'I': {7, 2, 2, 2, 7}, 'K': {5, 5, 6, 5, 5}, 'L': {4, 4, 4, 4, 7},
	'N': {5, 7, 7, 7, 5}, 'O': {7, 5, 5, 5, 7}, 'Q': {2, 5, 5, 6, 3}, 'R': {6, 5, 6, 5, 5},
	'W': {5, 5, 7, 7, 5}, 'T': {7, 2, 2, 2, 2}, 'H': {5, 5, 7, 5, 5}, 'U': {5, 5, 5, 5, 7},
	'G': {7, 4, 5, 5, 7}, 'P': {7, 5, 7, 4, 4}, 'Y': {5, 5, 2, 2, 2}, 'S': {7, 4, 7, 1, 7},
	'D': {6, 5, 5, 5, 6}, 'V': {5, 5, 5, 5, 2}, '/': {1, 1, 2, 4, 4}, 'X': {5, 5, 2, 5, 5},
	'J': {1, 1, 1, 5, 7},
}

// chartLabel is the short upper-case label of a workload under its bars:
// "Q1 keys=1000 exactly-once" is "Q1 1K EO", "sliding 10s/5s keys=1000
// exactly-once" is "SLIDE 1K EO".
func chartLabel(workload string) string {
	if strings.HasPrefix(workload, "ceiling") {
		return "CEIL"
	}
	var parts []string
	for _, f := range strings.Fields(workload) {
		switch {
		case f == "exactly-once":
			parts = append(parts, "EO")
		case f == "at-least-once":
			parts = append(parts, "ALO")
		case strings.HasPrefix(f, "keys="):
			n, err := strconv.Atoi(strings.TrimPrefix(f, "keys="))
			switch {
			case err != nil:
			case n >= 1e6 && n%1e6 == 0:
				parts = append(parts, strconv.Itoa(n/1e6)+"M")
			case n >= 1e3 && n%1e3 == 0:
				parts = append(parts, strconv.Itoa(n/1e3)+"K")
			default:
				parts = append(parts, strconv.Itoa(n))
			}
		case f == "Q0" || f == "Q1":
			parts = append(parts, f)
		case f == "sliding":
			parts = append(parts, "SLIDE")
		case f == "session":
			parts = append(parts, "SESS")
		case f == "join":
			parts = append(parts, "JOIN")
		case f == "dataflow":
			parts = append(parts, "FLOW")
		}
	}
	return strings.Join(parts, " ")
}

// drawText draws s with the glyph font at (x, y) (top left), each font
// pixel scale×scale.
func drawText(img *image.RGBA, x, y, scale int, s string, c color.Color) {
	for _, r := range s {
		g, ok := glyphs[r]
		if ok {
			for row := 0; row < 5; row++ {
				for col := 0; col < 3; col++ {
					if g[row]&(4>>col) != 0 {
						fill(img, x+col*scale, y+row*scale, scale, scale, c)
					}
				}
			}
		}
		x += 4 * scale
	}
}

func textWidth(s string, scale int) int { return len(s)*4*scale - scale }

func fill(img *image.RGBA, x, y, w, h int, c color.Color) {
	r := image.Rect(x, y, x+w, y+h).Intersect(img.Bounds())
	for yy := r.Min.Y; yy < r.Max.Y; yy++ {
		for xx := r.Min.X; xx < r.Max.X; xx++ {
			img.Set(xx, yy, c)
		}
	}
}

// shortRate formats events/s compactly for a bar label: 950, 12.3k, 1.25M.
func shortRate(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}

// chart draws the throughput of every summary as bars, one group per
// workload in order, coloured by system, each labelled with its value.
type chartBar struct {
	v float64
	c color.Color
}

func systemColor(sys string) color.Color {
	switch sys {
	case SystemWeir:
		return colWeir
	case SystemFlink:
		return colFlink
	}
	return colCeiling
}

// chartValue is one bar's figure.
type chartValue struct {
	workload, system string
	v                float64
}

// groupBars groups consecutive values of one workload into one group of
// bars (zero values are left out) and labels each group.
func groupBars(vs []chartValue) ([][]chartBar, []string) {
	var groups [][]chartBar
	var labels []string
	last := ""
	for _, v := range vs {
		if v.v == 0 {
			continue
		}
		if len(groups) == 0 || v.workload != last {
			groups = append(groups, nil)
			labels = append(labels, chartLabel(v.workload))
			last = v.workload
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], chartBar{v.v, systemColor(v.system)})
	}
	return groups, labels
}

// chart draws the report's PNG: drain throughput per workload and system,
// and below it (when measured) the end-to-end latency p99 of the live runs.
func (r *Report) chart() ([]byte, error) {
	var tp, lat []chartValue
	for _, s := range r.Summaries {
		tp = append(tp, chartValue{s.Workload, s.System, s.Throughput})
	}
	for _, l := range r.Live {
		lat = append(lat, chartValue{l.Workload, l.System, l.LatencyP99Ms})
	}
	groups, labels := groupBars(tp)
	panels := []*image.RGBA{barPanel("THROUGHPUT EVENTS/S", groups, labels, shortRate)}
	groups, labels = groupBars(lat)
	if len(groups) > 0 {
		panels = append(panels, barPanel("LATENCY P99 MS", groups, labels, func(x float64) string { return fmt.Sprintf("%.0f", x) }))
	}
	w, h := 0, 0
	for _, p := range panels {
		w = max(w, p.Bounds().Dx())
		h += p.Bounds().Dy()
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	fill(img, 0, 0, w, h, color.White)
	y := 0
	for _, p := range panels {
		b := p.Bounds()
		draw.Draw(img, image.Rect(0, y, b.Dx(), y+b.Dy()), p, b.Min, draw.Src)
		y += b.Dy()
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("bench: chart: %w", err)
	}
	return buf.Bytes(), nil
}

// barPanel draws one bar chart: groups of bars with a label under each
// group and each bar's value (formatted by label) above it.
func barPanel(title string, groups [][]chartBar, labels []string, label func(float64) string) *image.RGBA {
	maxV := 0.0
	for _, g := range groups {
		for _, b := range g {
			maxV = max(maxV, b.v)
		}
	}
	const (
		barW, gap, groupGap, margin, plotH, scale = 44, 6, 30, 40, 320, 2
	)
	w := margin * 2
	for _, g := range groups {
		w += len(g)*(barW+gap) + groupGap
	}
	w = max(w, 420) // room for the legend and the title
	h := plotH + 2*margin + 20
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	fill(img, 0, 0, w, h, color.White)
	base := margin + plotH
	for i := 1; i <= 4; i++ {
		fill(img, margin, base-plotH*i/4, w-2*margin, 1, colGrid)
	}
	fill(img, margin, base, w-2*margin, 2, colAxis)
	fill(img, margin, margin, 2, plotH, colAxis)
	if maxV == 0 {
		maxV = 1
	}
	// Legend, top left.
	lx := margin + 10
	for _, l := range []struct {
		name string
		c    color.Color
	}{{"WEIR", colWeir}, {"FLINK", colFlink}, {"CEIL", colCeiling}} {
		fill(img, lx, 12, 10, 10, l.c)
		drawText(img, lx+14, 12, scale, l.name, colAxis)
		lx += 14 + textWidth(l.name, scale) + 16
	}
	drawText(img, lx+20, 12, scale, title, colAxis)
	x := margin + groupGap/2
	for gi, g := range groups {
		gw := len(g)*(barW+gap) - gap
		drawText(img, x+(gw-textWidth(labels[gi], scale))/2, base+10, scale, labels[gi], colAxis)
		for _, b := range g {
			bh := int(b.v / maxV * float64(plotH-20))
			fill(img, x, base-bh, barW, bh, b.c)
			txt := label(b.v)
			tx := x + (barW-textWidth(txt, scale))/2
			drawText(img, tx, base-bh-6*scale-2, scale, txt, colAxis)
			x += barW + gap
		}
		x += groupGap
	}
	return img
}
