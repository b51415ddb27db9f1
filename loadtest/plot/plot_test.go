package plot

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// element is a parsed SVG element: its name and attributes, and its text.
type element struct {
	name  string
	attrs map[string]string
	text  string
}

// parseSVG checks that s is well-formed XML with an <svg> root and returns its elements in order.
func parseSVG(t *testing.T, s string) []element {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(s))
	var out []element
	var stack []int
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, s)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := element{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			out = append(out, e)
			stack = append(stack, len(out)-1)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				out[stack[len(stack)-1]].text += string(tok)
			}
		}
	}
	if len(out) == 0 || out[0].name != "svg" {
		t.Fatalf("root is not <svg>: %s", s)
	}
	return out
}

func byClass(els []element, class string) []element {
	var out []element
	for _, e := range els {
		if e.attrs["class"] == class {
			out = append(out, e)
		}
	}
	return out
}

func TestChartDrawsLinesWindowsAndBands(t *testing.T) {
	nan := math.NaN()
	c := Chart{
		Title: `Success <rate> & "p99"`, YLabel: "%", YUnit: "%", YMin: 0, YMax: 100,
		Lines: []Line{
			{Name: "success", Points: []Point{{0, 100}, {1, 99}, {2, nan}, {3, 40}, {4, 60}, {5, nan}, {6, 100}}},
			{Name: "target", Dashed: true, Color: "#000", Points: []Point{{0, 100}, {6, 100}}},
		},
		Windows: []Window{{From: 2, To: 4, Label: "payments latency=500ms"}},
		Bands: []Band{{Label: "breaker", Spans: []StateSpan{
			{From: 0, To: 2.5, State: "closed"}, {From: 2.5, To: 4.5, State: "open"}, {From: 4.5, To: 6, State: "half-open"},
		}}},
	}
	els := parseSVG(t, string(c.SVG()))
	svg := els[0]
	width, _ := strconv.ParseFloat(svg.attrs["width"], 64)
	height, _ := strconv.ParseFloat(svg.attrs["height"], 64)

	// The success line has three runs: two polylines and one lone point drawn as a circle.
	lines := byClass(els, "line")
	if len(lines) != 3 || len(byClass(els, "point")) != 1 {
		t.Fatalf("%d polylines and %d points, want 3 and 1", len(lines), len(byClass(els, "point")))
	}
	if lines[2].attrs["stroke-dasharray"] == "" || lines[0].attrs["stroke-dasharray"] != "" {
		t.Error("only the target line should be dashed")
	}
	for _, l := range lines {
		for _, pt := range strings.Fields(l.attrs["points"]) {
			xy := strings.Split(pt, ",")
			x, _ := strconv.ParseFloat(xy[0], 64)
			y, _ := strconv.ParseFloat(xy[1], 64)
			if x < marginLeft || x > width-marginRight || y < marginTop || y > height-marginBottom {
				t.Errorf("point %s outside the plot area", pt)
			}
		}
	}
	// y=100 is the top of the plot, y=40 lower down.
	first := strings.Fields(lines[0].attrs["points"])[0]
	if !strings.HasSuffix(first, ","+num(marginTop)) {
		t.Errorf("first point %s, want y at the top (%d)", first, marginTop)
	}

	win := byClass(els, "window")
	if len(win) != 1 {
		t.Fatalf("%d windows", len(win))
	}
	wx, _ := strconv.ParseFloat(win[0].attrs["x"], 64)
	ww, _ := strconv.ParseFloat(win[0].attrs["width"], 64)
	plotW := width - marginLeft - marginRight
	if math.Abs(wx-(marginLeft+plotW*2/6)) > 0.1 || math.Abs(ww-plotW*2/6) > 0.2 {
		t.Errorf("window at x=%v width %v, want %v and %v", wx, ww, marginLeft+plotW*2/6, plotW*2/6)
	}
	if l := byClass(els, "window-label"); len(l) != 1 || l[0].text != "payments latency=500ms" {
		t.Errorf("window label %+v", l)
	}

	states := byClass(els, "state")
	if len(states) != 3 || states[0].attrs["fill"] != "#2ca02c" || states[1].attrs["fill"] != "#d62728" || states[2].attrs["fill"] != "#ff7f0e" {
		t.Errorf("state spans %+v", states)
	}
	if l := byClass(els, "band-label"); len(l) != 1 || l[0].text != "breaker" {
		t.Errorf("band label %+v", l)
	}
	if titles := byClass(els, "title"); len(titles) != 1 || titles[0].text != `Success <rate> & "p99"` {
		t.Errorf("title %+v, want the text back intact after escaping", titles)
	}
	if l := byClass(els, "legend-label"); len(l) != 2 || l[0].text != "target" || l[1].text != "success" {
		t.Errorf("legend %+v", l)
	}
	if yt := byClass(els, "ytick"); len(yt) != 6 || yt[5].text != "100%" {
		t.Errorf("y ticks %+v, want 0%%…100%% by 20", yt)
	}
}

func TestChartFitsRangesAndSurvivesEmptyInput(t *testing.T) {
	for _, c := range []Chart{
		{},
		{Title: "flat", Lines: []Line{{Name: "zero", Points: []Point{{0, 0}, {1, 0}}}}},
		{Title: "only gaps", Lines: []Line{{Points: []Point{{0, math.NaN()}}}}},
		{Title: "window only", Windows: []Window{{From: 5, To: 5}}},
		{Title: "big", Lines: []Line{{Points: []Point{{0, 12345}, {100, 27000}}}}},
	} {
		els := parseSVG(t, string(c.SVG()))
		for _, e := range els {
			for k, v := range e.attrs {
				if strings.Contains(v, "NaN") || strings.Contains(v, "Inf") {
					t.Errorf("%s: %s %s=%q", c.Title, e.name, k, v)
				}
			}
		}
	}
	els := parseSVG(t, string(Chart{Lines: []Line{{Points: []Point{{0, 12345}, {100, 27000}}}}}.SVG()))
	yt := byClass(els, "ytick")
	if top := yt[len(yt)-1].text; top != "30k" {
		t.Errorf("top y tick %q, want the data's max rounded up to 30k", top)
	}
}

func TestWriteSVGIsAStandaloneFile(t *testing.T) {
	var b bytes.Buffer
	if err := (Chart{Title: "x", Lines: []Line{{Points: []Point{{0, 1}, {1, 2}}}}}).WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "<?xml") || !strings.Contains(b.String(), `xmlns="http://www.w3.org/2000/svg"`) {
		t.Errorf("standalone SVG %q", b.String()[:80])
	}
	parseSVG(t, strings.SplitN(b.String(), "\n", 2)[1])
}

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		n      int
		want   []float64
	}{
		{0, 97, 5, []float64{0, 20, 40, 60, 80, 100}},
		{0, 1, 5, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{0, 60, 8, []float64{0, 10, 20, 30, 40, 50, 60}},
		{3, 7, 4, []float64{3, 4, 5, 6, 7}},
		{5, 5, 4, []float64{5}},
	} {
		if got := niceTicks(tc.lo, tc.hi, tc.n); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("niceTicks(%v, %v, %d) = %v, want %v", tc.lo, tc.hi, tc.n, got, tc.want)
		}
	}
}

func TestStateColorIsStable(t *testing.T) {
	if StateColor("half_open") != "#ff7f0e" || StateColor("Closed") != "#2ca02c" {
		t.Error("breaker states have their fixed colours")
	}
	if StateColor("draining") != StateColor("draining") {
		t.Error("an unknown state's colour changes between calls")
	}
}
