package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/resilience-lab/lab/loadtest"
	"github.com/resilience-lab/lab/loadtest/plot"
)

func sampleResult() *loadtest.Result {
	r := &loadtest.Result{
		Profile:     loadtest.Constant(100, 2500*time.Millisecond),
		Started:     time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC),
		MaxInFlight: 1000, MaxRequests: 1000, SpanSeconds: 2.5,
		Seconds: []loadtest.Second{
			{T: 0, Target: 100, Sent: 100, Completed: 98, OK: 100, Latency: loadtest.Latency{P50: 1, P90: 2, P99: 4, Max: 5}},
			{T: 1, Target: 100, Sent: 80, Dropped: 20, Completed: 70, OK: 60, Errors: map[string]uint64{"http_503": 20},
				Latency: loadtest.Latency{P50: 3, P90: 40, P99: 300, Max: 900}},
			{T: 2, Target: 50, Sent: 0, Dropped: 0},
		},
		Kinds:   []loadtest.KindTotals{{Name: `get "<root>"`, Sent: 180, Dropped: 20, OK: 160, Errors: map[string]uint64{"http_503": 20}}},
		Actions: []loadtest.ActionRecord{{Name: "inject", At: 1, Started: 1, Finished: 1.01}, {Name: "lift", At: 2.4, Skipped: true}},
	}
	r.Totals = loadtest.Totals{Scheduled: 200, Sent: 180, Dropped: 20, OK: 160, Errors: map[string]uint64{"http_503": 20},
		Expected: map[string]uint64{"http_409": 3}, Throughput: 64, ErrorRate: 0.2, DroppedRate: 0.1,
		Latency: loadtest.Latency{P50: 2, P90: 30, P95: 90, P99: 310, Max: 900, Mean: 9}}
	return r
}

func TestChartsFollowTheSeries(t *testing.T) {
	charts := Charts(sampleResult(), []plot.Window{{From: 1, To: 2, Label: "fault"}}, nil)
	if len(charts) != 3 {
		t.Fatalf("%d charts", len(charts))
	}
	thr, succ, lat := charts[0], charts[1], charts[2]
	// The last second lasted 0.5 s: its 50 due requests are a target rate of 100/s.
	if p := thr.Lines[0].Points[2]; p.X != 2.5 || p.Y != 100 {
		t.Errorf("target point of the partial second %+v, want (2.5, 100)", p)
	}
	if p := succ.Lines[0].Points; p[0].Y != 100 || p[1].Y != 60 || !math.IsNaN(p[2].Y) {
		t.Errorf("success points %+v, want 100, 60 and a gap", p)
	}
	if p := lat.Lines[2].Points; lat.Lines[2].Name != "p99" || p[1].Y != 300 || !math.IsNaN(p[2].Y) {
		t.Errorf("p99 points %+v", p)
	}
	for _, c := range charts {
		if len(c.Windows) != 1 || c.XMax != 3 {
			t.Errorf("%s: windows %v, x max %v", c.Title, c.Windows, c.XMax)
		}
	}
}

func TestWriteHTMLIsSelfContainedAndEscaped(t *testing.T) {
	th, _ := loadtest.ParseThreshold("p99<300ms")
	res := sampleResult()
	d := Data{
		Title:      `Run <script>alert(1)</script>`,
		Target:     "http://127.0.0.1:8080",
		Mix:        "trivial",
		Result:     res,
		Thresholds: []loadtest.ThresholdResult{th.Evaluate(res.Totals)},
		Windows:    []plot.Window{{From: 1, To: 2, Label: "payments latency"}},
		Bands:      []plot.Band{{Label: "breaker", Spans: []plot.StateSpan{{From: 0, To: 1.5, State: "closed"}, {From: 1.5, To: 2.5, State: "open"}}}},
	}
	var b bytes.Buffer
	if err := WriteHTML(&b, d); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Contains(out, "<script") {
		t.Error("the title's <script> reached the page unescaped")
	}
	if !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.Contains(out, "</html>") {
		t.Error("not a complete HTML page")
	}
	// Nothing is loaded from elsewhere: the only URLs are the SVG namespace and the target shown.
	for _, u := range regexp.MustCompile(`(?:src|href)=|https?://[^"<\s]+`).FindAllString(out, -1) {
		if u != "http://www.w3.org/2000/svg" && u != "http://127.0.0.1:8080" {
			t.Errorf("external reference %q", u)
		}
	}
	svgs := regexp.MustCompile(`(?s)<svg .*?</svg>`).FindAllString(out, -1)
	if len(svgs) != 3 {
		t.Fatalf("%d inline SVG charts, want 3", len(svgs))
	}
	for _, s := range svgs {
		dec := xml.NewDecoder(strings.NewReader(s))
		windows, states := 0, 0
		for {
			tok, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("chart is not well-formed: %v", err)
			}
			if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
				for _, a := range se.Attr {
					if a.Name.Local == "class" && a.Value == "window" {
						windows++
					}
					if a.Name.Local == "class" && a.Value == "state" {
						states++
					}
				}
			}
		}
		if windows != 1 || states != 2 {
			t.Errorf("chart has %d shaded windows and %d state spans, want 1 and 2", windows, states)
		}
	}
	for _, want := range []string{"violated", "FAIL", "http_503", "http_409", "skipped", `get &#34;&lt;root&gt;&#34;`, "stopped at the request cap"} {
		if want == "stopped at the request cap" {
			if strings.Contains(out, want) {
				t.Errorf("page says %q for a run that was not capped", want)
			}
			continue
		}
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestWriteJSONRoundTrips(t *testing.T) {
	d := Data{Title: "t", Target: "http://127.0.0.1:1", Mix: "m", Result: sampleResult(), Windows: []plot.Window{{From: 1, To: 2, Label: "x"}}}
	var b bytes.Buffer
	if err := WriteJSON(&b, d); err != nil {
		t.Fatal(err)
	}
	var back Data
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Result.Totals.Dropped != 20 || back.Result.Seconds[1].Errors["http_503"] != 20 || back.Windows[0].Label != "x" ||
		back.Result.Profile.Segments[0].To != 100 {
		t.Errorf("round trip lost data: %+v", back.Result)
	}
	if !strings.Contains(b.String(), `"p99_ms": 300`) || !strings.Contains(b.String(), `"dropped_rate": 0.1`) {
		t.Error("JSON lacks the documented field names")
	}
}

func TestWriteHTMLNeedsAResult(t *testing.T) {
	if err := WriteHTML(io.Discard, Data{}); err == nil {
		t.Error("no error for a report without a result")
	}
}
