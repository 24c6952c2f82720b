package main

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want Stat
	}{
		{"odd", []float64{3, 1, 2}, Stat{Median: 2, Min: 1, Max: 3, N: 3}},
		{"even", []float64{4, 1, 3, 2}, Stat{Median: 2.5, Min: 1, Max: 4, N: 4}},
		{"one", []float64{7}, Stat{Median: 7, Min: 7, Max: 7, N: 1}},
		{"nan ignored", []float64{math.NaN(), 5, 1}, Stat{Median: 3, Min: 1, Max: 5, N: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, summarize(tt.in))
		})
	}
	empty := summarize(nil)
	assert.Equal(t, 0, empty.N)
	assert.True(t, math.IsNaN(empty.Median))
}

func TestPairRatioPairsByRun(t *testing.T) {
	a := []Sample{{Wall: 2 * time.Second}, {Wall: 3 * time.Second}, {Wall: 9 * time.Second}}
	b := []Sample{{Wall: 4 * time.Second}, {Wall: 3 * time.Second}}
	assert.Equal(t, []float64{0.5, 1}, pairRatio(a, b, false))

	r := newRatio("s", "ptest-snap", "peer", a, b, target{max: 0.8})
	require.NotNil(t, r.Met)
	assert.True(t, *r.Met, "median 0.75 ≤ 0.8")
	r = newRatio("s", "ptest-snap", "peer", a, b, target{max: 0.7})
	assert.False(t, *r.Met)
	assert.Nil(t, newRatio("s", "x", "y", a, b, target{}).Met, "no target, no verdict")
}

func TestStoredRatioComparesBytes(t *testing.T) {
	// The second snapshot's store growth against a bound that has only
	// bytes (per-file zstd -3): the ratio is of bytes, and the bound's
	// figure has no wall, CPU or RSS.
	snap := []Sample{{Wall: time.Second, Bytes: 1900}, {Wall: time.Second, Bytes: 1600}, {Wall: time.Second, Bytes: 1700}}
	bound := []Sample{{Bytes: 1700}, {Bytes: 1700}, {Bytes: 1700}}
	r := newRatio("second snapshot after small", toolSnap, toolPerFileZstd3, snap, bound, targetFor("second snapshot after small", toolSnap, toolPerFileZstd3))
	assert.True(t, r.Stored)
	assert.InDelta(t, 1.0, r.Wall.Median, 1e-9)
	require.NotNil(t, r.Met)
	assert.True(t, *r.Met, "median 1.0 ≤ 1.0")
	f := newFigure("second snapshot after small", toolPerFileZstd3, bound)
	assert.Equal(t, 0, f.WallS.N)
	assert.Equal(t, 3, f.MB.N)
	assert.True(t, targetFor("x", toolSnap, toolPerFileZstd3).stored, "a bound is compared by bytes even without a target")
}

func TestNewFigure(t *testing.T) {
	f := newFigure("initial", "tar", []Sample{
		{Wall: time.Second, CPU: 2 * time.Second, MaxRSS: 10e6, Bytes: 100e6},
		{Wall: 3 * time.Second, CPU: 4 * time.Second, MaxRSS: 30e6, Bytes: 100e6},
	})
	assert.Equal(t, 2.0, f.WallS.Median)
	assert.Equal(t, 3.0, f.CPUS.Median)
	assert.Equal(t, 30.0, f.RSSMB.Max)
	assert.Equal(t, 100.0, f.MB.Median)
}
