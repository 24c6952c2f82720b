package main

import (
	"math"
	"sort"
)

// Stat is the median, min and max of a set of values.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// summarize returns the Stat of vs; NaN values are ignored. An empty input
// gives a Stat with N = 0 and NaN fields.
func summarize(vs []float64) Stat {
	xs := make([]float64, 0, len(vs))
	for _, v := range vs {
		if !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return Stat{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	sort.Float64s(xs)
	st := Stat{Min: xs[0], Max: xs[len(xs)-1], N: len(xs)}
	if m := len(xs) / 2; len(xs)%2 == 1 {
		st.Median = xs[m]
	} else {
		st.Median = (xs[m-1] + xs[m]) / 2
	}
	return st
}

// Figure is one tool's result in one scenario, over all measured runs.
type Figure struct {
	Scenario string   `json:"scenario"`
	Tool     string   `json:"tool"`
	Samples  []Sample `json:"samples"`
	WallS    Stat     `json:"wall_seconds"`
	CPUS     Stat     `json:"cpu_seconds"`
	RSSMB    Stat     `json:"max_rss_mb"`
	MB       Stat     `json:"stored_mb"`
}

func newFigure(scenario, tool string, samples []Sample) Figure {
	f := Figure{Scenario: scenario, Tool: tool, Samples: samples}
	var wall, cpu, rss, mb []float64
	for _, s := range samples {
		if s.Wall > 0 { // a bound (toolPerFileZstd3) has only bytes
			wall = append(wall, s.Wall.Seconds())
			cpu = append(cpu, s.CPU.Seconds())
			rss = append(rss, float64(s.MaxRSS)/1e6)
		}
		if s.Bytes > 0 {
			mb = append(mb, float64(s.Bytes)/1e6)
		}
	}
	f.WallS, f.CPUS, f.RSSMB, f.MB = summarize(wall), summarize(cpu), summarize(rss), summarize(mb)
	return f
}

// Ratio compares ptest-snap with a peer in one scenario: the wall-time ratio
// ptest-snap / peer of each run (or the stored-bytes ratio, when Stored),
// paired by run, then summarised. Pairing by run keeps a noisy machine's
// slow moments out of the ratio.
type Ratio struct {
	Scenario string `json:"scenario"`
	Subject  string `json:"subject"`
	Peer     string `json:"peer"`
	// Stored: Wall holds the ratio of stored bytes, not of wall time.
	Stored bool `json:"stored,omitempty"`
	Wall   Stat `json:"wall_ratio"`
	// Target is the largest acceptable median ratio (0: none set).
	Target float64 `json:"target,omitempty"`
	Met    *bool   `json:"met,omitempty"`
}

// pairRatio returns the per-run ratios a[i]/b[i] of wall time (of stored
// bytes with stored) over the runs both have.
func pairRatio(a, b []Sample, stored bool) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		switch {
		case stored && b[i].Bytes > 0:
			out = append(out, float64(a[i].Bytes)/float64(b[i].Bytes))
		case !stored && b[i].Wall > 0:
			out = append(out, a[i].Wall.Seconds()/b[i].Wall.Seconds())
		}
	}
	return out
}

func newRatio(scenario, subject, peer string, a, b []Sample, t target) Ratio {
	r := Ratio{Scenario: scenario, Subject: subject, Peer: peer, Stored: t.stored, Wall: summarize(pairRatio(a, b, t.stored)), Target: t.max}
	target := t.max
	if target > 0 && r.Wall.N > 0 {
		met := r.Wall.Median <= target
		r.Met = &met
	}
	return r
}
