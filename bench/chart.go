package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var (
	colBG     = color.RGBA{255, 255, 255, 255}
	colText   = color.RGBA{30, 30, 30, 255}
	colGrid   = color.RGBA{220, 220, 220, 255}
	colFaster = color.RGBA{46, 139, 87, 255}   // ptest-snap faster than the peer
	colSlower = color.RGBA{205, 92, 92, 255}   // ptest-snap slower
	colTarget = color.RGBA{30, 30, 160, 255}   // the target
	colOne    = color.RGBA{120, 120, 120, 255} // parity
)

// writeChart draws one horizontal bar per ratio (ptest-snap / peer, median
// wall time) on a log scale, with parity (1×) and each target marked, and
// writes it as a PNG.
func writeChart(path string, ratios []Ratio) error {
	const (
		rowH, labelW, plotW, pad = 22, 430, 420, 16
	)
	rows := 0
	for _, r := range ratios {
		if r.Wall.N > 0 {
			rows++
		}
	}
	h := pad*3 + rowH*(rows+1)
	img := image.NewRGBA(image.Rect(0, 0, labelW+plotW+pad*2, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{colBG}, image.Point{}, draw.Src)
	// log10 scale from 0.01× to 10×.
	lo, hi := -2.0, 1.0
	x := func(v float64) int {
		l := math.Log10(math.Max(v, 1e-3))
		l = math.Max(lo, math.Min(hi, l))
		return labelW + int((l-lo)/(hi-lo)*float64(plotW-1))
	}
	top := pad * 2
	text(img, pad, pad, "ptest-snap / peer, median wall-time ratio (log scale; left of 1x = ptest-snap faster; | = target)", colText)
	for _, v := range []float64{0.01, 0.1, 1, 10} {
		xx := x(v)
		vline(img, xx, top, top+rowH*rows, colGrid)
		text(img, xx-8, top+rowH*rows+14, fmt.Sprintf("%gx", v), colText)
	}
	vline(img, x(1), top, top+rowH*rows, colOne)
	i := 0
	for _, r := range ratios {
		if r.Wall.N == 0 {
			continue
		}
		y := top + i*rowH
		label := fmt.Sprintf("%s vs %s: %.3f", r.Scenario, r.Peer, r.Wall.Median)
		text(img, pad, y+rowH-7, clip(label, labelW/7-1), colText)
		c := colFaster
		if r.Wall.Median > 1 {
			c = colSlower
		}
		x0, x1 := x(0.01), x(r.Wall.Median)
		draw.Draw(img, image.Rect(x0, y+4, max(x1, x0+1), y+rowH-4), &image.Uniform{c}, image.Point{}, draw.Src)
		if r.Target > 0 {
			tx := x(r.Target)
			draw.Draw(img, image.Rect(tx-1, y+1, tx+2, y+rowH-1), &image.Uniform{colTarget}, image.Point{}, draw.Src)
		}
		i++
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("chart: %w", err)
	}
	return f.Close()
}

func text(img draw.Image, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func vline(img draw.Image, x, y0, y1 int, c color.Color) {
	for y := y0; y <= y1; y++ {
		img.Set(x, y, c)
	}
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
