// Package plot draws time-series charts as self-contained SVG, by hand: no JavaScript, no fonts or
// styles fetched from anywhere, so a report opens offline and diffs cleanly.
//
// A Chart has lines over a shared x axis (seconds, typically), shaded Windows (a fault being injected)
// and state Bands drawn under the plot on the same axis (a circuit breaker closed/open/half-open). The
// load generator's report and the chaos lab's experiment reports both draw with it.
package plot

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"html"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
)

// Point is one sample. A NaN Y leaves a gap in its line (a second with nothing to measure).
type Point struct{ X, Y float64 }

// Line is a named series.
type Line struct {
	Name   string
	Color  string // any CSS colour; "" takes the next colour of Palette
	Dashed bool
	Points []Point
}

// Window shades the stretch [From, To] of the x axis across the plot, e.g. while a fault is injected.
type Window struct {
	From  float64 `json:"from"`
	To    float64 `json:"to"`
	Label string  `json:"label,omitempty"`
	Color string  `json:"color,omitempty"` // "" is a light red
}

// StateSpan is one stretch of a state band: State held from From to To.
type StateSpan struct {
	From  float64 `json:"from"`
	To    float64 `json:"to"`
	State string  `json:"state"`
	Color string  `json:"color,omitempty"` // "" picks StateColor(State)
}

// Band is a labelled row of state spans drawn under the plot, sharing its x axis.
type Band struct {
	Label string      `json:"label"`
	Spans []StateSpan `json:"spans"`
}

// Chart is one plot. Zero values pick sensible defaults.
type Chart struct {
	Title  string
	XLabel string // default "seconds"
	YLabel string
	YUnit  string // appended to the y tick labels ("%", "ms")
	// Width and Height are the whole SVG's size in pixels, bands included; default 760×260 (+ bands).
	Width, Height int
	// XMin and XMax fix the x range; both zero fits it to the lines, windows and bands.
	XMin, XMax float64
	// YMin is the bottom of the y axis (default 0); YMax its top, 0 to fit the data.
	YMin, YMax float64
	Lines      []Line
	Windows    []Window
	Bands      []Band
}

// Palette colours lines given no colour, in order.
var Palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"}

// StateColor is the colour of a state in a band: the usual breaker states get green, red and amber;
// other names a stable colour of Palette.
func StateColor(state string) string {
	switch strings.ToLower(strings.ReplaceAll(state, "_", "-")) {
	case "closed", "ok", "healthy", "up":
		return "#2ca02c"
	case "open", "down", "failed":
		return "#d62728"
	case "half-open", "degraded":
		return "#ff7f0e"
	}
	h := fnv.New32a()
	h.Write([]byte(state))
	return Palette[h.Sum32()%uint32(len(Palette))]
}

const (
	marginLeft   = 64
	marginRight  = 16
	marginTop    = 30
	marginBottom = 40
	bandHeight   = 18
	bandGap      = 4
)

// SVG renders the chart as an inline <svg> element, safe to place in an html/template.
func (c Chart) SVG() template.HTML {
	var b bytes.Buffer
	c.write(&b)
	return template.HTML(b.String()) // every piece of text in it was escaped by write
}

// WriteSVG writes the chart as a standalone SVG file.
func (c Chart) WriteSVG(w io.Writer) error {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	c.write(&b)
	b.WriteString("\n")
	_, err := w.Write(b.Bytes())
	return err
}

func esc(s string) string { return html.EscapeString(s) }

func num(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

type frame struct {
	x0, x1, y0, y1 float64 // data ranges
	left, top      float64 // plot area origin in pixels
	w, h           float64 // plot area size
}

func (f frame) px(x float64) float64 {
	if f.x1 == f.x0 {
		return f.left
	}
	x = math.Max(f.x0, math.Min(f.x1, x))
	return f.left + (x-f.x0)/(f.x1-f.x0)*f.w
}

func (f frame) py(y float64) float64 {
	y = math.Max(f.y0, math.Min(f.y1, y))
	return f.top + f.h - (y-f.y0)/(f.y1-f.y0)*f.h
}

func (c Chart) frame() (frame, int, int) {
	width, height := c.Width, c.Height
	if width <= 0 {
		width = 760
	}
	if height <= 0 {
		height = 260 + len(c.Bands)*(bandHeight+bandGap)
	}
	f := frame{left: marginLeft, top: marginTop}
	f.w = float64(width - marginLeft - marginRight)
	f.h = float64(height-marginTop-marginBottom) - float64(len(c.Bands)*(bandHeight+bandGap))
	if f.h < 20 {
		f.h = 20
	}
	f.x0, f.x1 = c.XMin, c.XMax
	if f.x0 == 0 && f.x1 == 0 {
		f.x0, f.x1 = math.Inf(1), math.Inf(-1)
		grow := func(x float64) {
			if !math.IsNaN(x) && !math.IsInf(x, 0) {
				f.x0, f.x1 = math.Min(f.x0, x), math.Max(f.x1, x)
			}
		}
		for _, l := range c.Lines {
			for _, p := range l.Points {
				grow(p.X)
			}
		}
		for _, w := range c.Windows {
			grow(w.From)
			grow(w.To)
		}
		for _, b := range c.Bands {
			for _, s := range b.Spans {
				grow(s.From)
				grow(s.To)
			}
		}
		if math.IsInf(f.x0, 1) {
			f.x0, f.x1 = 0, 1
		}
	}
	if f.x1 <= f.x0 {
		f.x1 = f.x0 + 1
	}
	f.y0, f.y1 = c.YMin, c.YMax
	if f.y1 == 0 {
		top := math.Inf(-1)
		for _, l := range c.Lines {
			for _, p := range l.Points {
				if !math.IsNaN(p.Y) && !math.IsInf(p.Y, 0) {
					top = math.Max(top, p.Y)
				}
			}
		}
		if math.IsInf(top, -1) || top <= f.y0 {
			top = f.y0 + 1
		}
		ticks := niceTicks(f.y0, top, 5)
		f.y1 = ticks[len(ticks)-1]
		if f.y1 < top {
			f.y1 = top
		}
	}
	if f.y1 <= f.y0 {
		f.y1 = f.y0 + 1
	}
	return f, width, height
}

func (c Chart) write(b *bytes.Buffer) {
	f, width, height := c.frame()
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`, width, height, width, height)
	fmt.Fprintf(b, `<title>%s</title>`, esc(c.Title))
	fmt.Fprintf(b, `<rect class="background" x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`, width, height)
	fmt.Fprintf(b, `<text class="title" x="%d" y="16" font-size="13" font-weight="bold">%s</text>`, marginLeft, esc(c.Title))

	// Fault windows first, so lines are drawn over them.
	for _, w := range c.Windows {
		color := w.Color
		if color == "" {
			color = "#d62728"
		}
		x0, x1 := f.px(w.From), f.px(w.To)
		fmt.Fprintf(b, `<rect class="window" x="%s" y="%s" width="%s" height="%s" fill="%s" fill-opacity="0.12"/>`,
			num(x0), num(f.top), num(math.Max(x1-x0, 1)), num(f.h), esc(color))
		if w.Label != "" {
			fmt.Fprintf(b, `<text class="window-label" x="%s" y="%s" fill="%s">%s</text>`, num(x0+3), num(f.top+12), esc(color), esc(w.Label))
		}
	}

	// Axes, grid and ticks.
	for _, t := range niceTicks(f.y0, f.y1, 5) {
		y := f.py(t)
		fmt.Fprintf(b, `<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e0e0e0"/>`, num(f.left), num(y), num(f.left+f.w), num(y))
		fmt.Fprintf(b, `<text class="ytick" x="%s" y="%s" text-anchor="end">%s</text>`, num(f.left-6), num(y+4), esc(formatTick(t)+c.YUnit))
	}
	axisY := f.top + f.h
	fmt.Fprintf(b, `<line class="axis" x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>`, num(f.left), num(axisY), num(f.left+f.w), num(axisY))
	fmt.Fprintf(b, `<line class="axis" x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>`, num(f.left), num(f.top), num(f.left), num(axisY))
	labelY := axisY + float64(len(c.Bands)*(bandHeight+bandGap)) + 14
	for _, t := range niceTicks(f.x0, f.x1, 8) {
		x := f.px(t)
		fmt.Fprintf(b, `<line class="xtick" x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>`, num(x), num(axisY), num(x), num(axisY+4))
		fmt.Fprintf(b, `<text class="xtick-label" x="%s" y="%s" text-anchor="middle">%s</text>`, num(x), num(labelY), esc(formatTick(t)))
	}
	xlabel := c.XLabel
	if xlabel == "" {
		xlabel = "seconds"
	}
	fmt.Fprintf(b, `<text class="xlabel" x="%s" y="%s" text-anchor="middle" fill="#555">%s</text>`, num(f.left+f.w/2), num(labelY+16), esc(xlabel))
	if c.YLabel != "" {
		fmt.Fprintf(b, `<text class="ylabel" x="12" y="%s" text-anchor="middle" fill="#555" transform="rotate(-90 12 %s)">%s</text>`,
			num(f.top+f.h/2), num(f.top+f.h/2), esc(c.YLabel))
	}

	// Lines, split at gaps.
	for i, l := range c.Lines {
		color := l.Color
		if color == "" {
			color = Palette[i%len(Palette)]
		}
		dash := ""
		if l.Dashed {
			dash = ` stroke-dasharray="5 3"`
		}
		var run []Point
		flush := func() {
			switch len(run) {
			case 0:
			case 1:
				fmt.Fprintf(b, `<circle class="point" cx="%s" cy="%s" r="2" fill="%s"/>`, num(f.px(run[0].X)), num(f.py(run[0].Y)), esc(color))
			default:
				pts := make([]string, len(run))
				for j, p := range run {
					pts[j] = num(f.px(p.X)) + "," + num(f.py(p.Y))
				}
				fmt.Fprintf(b, `<polyline class="line" fill="none" stroke="%s" stroke-width="1.6"%s points="%s"/>`, esc(color), dash, strings.Join(pts, " "))
			}
			run = run[:0]
		}
		for _, p := range l.Points {
			if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) || math.IsNaN(p.X) {
				flush()
				continue
			}
			run = append(run, p)
		}
		flush()
	}

	// State bands under the plot.
	for i, band := range c.Bands {
		y := axisY + float64(bandGap) + float64(i*(bandHeight+bandGap))
		fmt.Fprintf(b, `<text class="band-label" x="%s" y="%s" text-anchor="end">%s</text>`, num(f.left-6), num(y+13), esc(band.Label))
		for _, s := range band.Spans {
			color := s.Color
			if color == "" {
				color = StateColor(s.State)
			}
			x0, x1 := f.px(s.From), f.px(s.To)
			fmt.Fprintf(b, `<rect class="state" x="%s" y="%s" width="%s" height="%d" fill="%s" fill-opacity="0.75"><title>%s</title></rect>`,
				num(x0), num(y), num(math.Max(x1-x0, 1)), bandHeight, esc(color), esc(fmt.Sprintf("%s: %s–%s", s.State, formatTick(s.From), formatTick(s.To))))
			if x1-x0 > float64(7*len(s.State)) {
				fmt.Fprintf(b, `<text class="state-label" x="%s" y="%s" fill="#fff">%s</text>`, num(x0+3), num(y+13), esc(s.State))
			}
		}
	}

	// Legend, right-aligned on the title row.
	x := float64(width - marginRight)
	for i := len(c.Lines) - 1; i >= 0; i-- {
		l := c.Lines[i]
		if l.Name == "" {
			continue
		}
		color := l.Color
		if color == "" {
			color = Palette[i%len(Palette)]
		}
		x -= float64(7*len([]rune(l.Name)) + 26)
		dash := ""
		if l.Dashed {
			dash = ` stroke-dasharray="5 3"`
		}
		fmt.Fprintf(b, `<line class="legend" x1="%s" y1="12" x2="%s" y2="12" stroke="%s" stroke-width="2"%s/>`, num(x), num(x+16), esc(color), dash)
		fmt.Fprintf(b, `<text class="legend-label" x="%s" y="16">%s</text>`, num(x+20), esc(l.Name))
	}
	b.WriteString(`</svg>`)
}

// niceTicks returns about n round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of
// ten, the first at or below lo and the last at or above hi.
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo || n < 1 {
		return []float64{lo}
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	// Ticks are k·step for whole k; dividing by 1/step (whole for steps below 1) keeps 0.6 from
	// coming out as 0.6000000000000001.
	at := func(k float64) float64 {
		if step < 1 {
			return k / math.Round(1/step)
		}
		return k * step
	}
	var ticks []float64
	for k := math.Floor(lo / step); ; k++ {
		ticks = append(ticks, at(k))
		if at(k) >= hi-step*1e-9 || len(ticks) > 4*n+2 {
			return ticks
		}
	}
}

func formatTick(v float64) string {
	if a := math.Abs(v); a >= 10000 {
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
}
