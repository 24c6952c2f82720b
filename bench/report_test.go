package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleResults() *Results {
	snap := []Sample{{Wall: 2 * time.Second, Bytes: 90e6}, {Wall: 4 * time.Second, Bytes: 90e6}}
	tar := []Sample{{Wall: 2 * time.Second, Bytes: 96e6}, {Wall: 2 * time.Second, Bytes: 96e6}}
	return &Results{
		Dataset: "/data/x", Engine: "dir", Runs: 2, Machine: map[string]string{"cpu": "test", "cores": "2"},
		Figures: []Figure{newFigure("initial snapshot", toolSnap, snap), newFigure("initial snapshot", toolTarZstd1, tar)},
		Ratios:  []Ratio{newRatio("initial snapshot", toolSnap, toolTarZstd1, snap, tar, target{max: 1.5})},
		Growth:  map[string][]Sample{toolSnap: {{Bytes: 90e6}, {Bytes: 1e6}, {Bytes: 3e6}}},
		Scaling: []scalePoint{{Scale: 1, Files: 10, MB: 1, CreateS: 0.1, RestoreS: 0.1, StoreMB: 0.5, TarS: 0.1, ArchiveMB: 0.4}},
		Skipped: []string{"kopia: not on PATH"},
	}
}

func TestMarkdown(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, writeMarkdown(&out, sampleResults()))
	md := out.String()
	assert.Contains(t, md, "| initial snapshot | ptest-snap | 3.00 s (2.00–4.00) |")
	assert.Contains(t, md, `| initial snapshot | tar \| zstd -1 -T0 | 2.00 s |`)
	assert.Contains(t, md, `| initial snapshot | tar \| zstd -1 -T0 | 1.500 (1.000–2.000) | ≤ 1.50 | yes |`)
	assert.Contains(t, md, "| ptest-snap | 3 | 94.0 MB | 2.00 MB (1.00–3.00) |", "growth: first step excluded from the median step")
	assert.Contains(t, md, "| 1× | 10 |")
	assert.Contains(t, md, "skipped: kopia")
}

func TestJSONAndChart(t *testing.T) {
	dir := t.TempDir()
	res := sampleResults()
	res.Ratios = append(res.Ratios, newRatio("verify", toolSnap, "zstd -t", nil, nil, target{})) // no data: NaN
	require.NoError(t, writeJSON(filepath.Join(dir, "results.json"), res))
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	var back Results
	require.NoError(t, json.Unmarshal(b, &back), "NaN must not reach the JSON")
	assert.Equal(t, 1.5, back.Ratios[0].Wall.Median)
	require.NotNil(t, back.Ratios[0].Met)
	assert.True(t, *back.Ratios[0].Met)

	require.NoError(t, writeChart(filepath.Join(dir, "ratios.png"), res.Ratios))
	f, err := os.Open(filepath.Join(dir, "ratios.png"))
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	assert.Greater(t, img.Bounds().Dy(), 40)
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-runs", "3", "-scenarios", "verify,growth", "-scales", "1,8"})
	require.NoError(t, err)
	assert.Equal(t, 3, cfg.Runs)
	assert.Equal(t, []string{"verify", "growth"}, cfg.Scenarios)
	assert.Equal(t, []int{1, 8}, cfg.Scales)
	_, err = parseFlags([]string{"-scenarios", "nope"})
	assert.ErrorContains(t, err, `unknown scenario "nope"`)
	_, err = parseFlags([]string{"-runs", "0"})
	assert.Error(t, err)
}
