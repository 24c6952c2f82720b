package main

import (
	"context"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// makeVenvFull builds the venv-full dataset at dir: a fresh `python3 -m
// venv`, then the base interpreter's site-packages copied in — real packages,
// ~460 MB and ~38,500 files on the project's machines.
func makeVenvFull(ctx context.Context, python, dir string) error {
	if err := run(ctx, cmd(python, "-m", "venv", dir)); err != nil {
		return fmt.Errorf("venv-full: %w", err)
	}
	base, err := output(ctx, cmd(python, "-c", "import site; print(site.getsitepackages()[0])"))
	if err != nil {
		return fmt.Errorf("venv-full: %w", err)
	}
	dst, err := venvSitePackages(dir)
	if err != nil {
		return fmt.Errorf("venv-full: %w", err)
	}
	if err := run(ctx, cmd("cp", "-a", strings.TrimSpace(base)+"/.", dst+"/")); err != nil {
		return fmt.Errorf("venv-full: %w", err)
	}
	return nil
}

// venvSitePackages returns the venv's lib/pythonX.Y/site-packages.
func venvSitePackages(venv string) (string, error) {
	matches, err := filepath.Glob(filepath.Join(venv, "lib", "python*", "site-packages"))
	if err != nil || len(matches) != 1 {
		return "", fmt.Errorf("%s: no single lib/python*/site-packages (found %d)", venv, len(matches))
	}
	return matches[0], nil
}

// textGen produces deterministic, source-code-like text (compressible about
// as well as real Python), or incompressible bytes, from a seed.
type textGen struct{ rng *rand.Rand }

func newTextGen(seed uint64) *textGen {
	return &textGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

var words = strings.Fields(`def class return import from self None True False if else elif for in
while try except finally with as lambda yield assert raise pass break continue and or not is
value result data name path args kwargs config options request response error index count
items keys values append extend update get set len range list dict str int float bool print`)

func (g *textGen) text(n int) []byte {
	b := make([]byte, 0, n+16)
	indent := 0
	for len(b) < n {
		b = append(b, strings.Repeat("    ", indent)...)
		for w := 2 + g.rng.IntN(8); w > 0; w-- {
			b = append(b, words[g.rng.IntN(len(words))]...)
			if g.rng.IntN(5) == 0 {
				b = fmt.Appendf(b, "_%d", g.rng.IntN(1000))
			}
			b = append(b, ' ')
		}
		b[len(b)-1] = '\n'
		indent = max(0, min(4, indent+g.rng.IntN(3)-1))
	}
	return b[:n]
}

func (g *textGen) random(n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := g.rng.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(g.rng.Uint32())
	}
	return b
}

// SyntheticSpec describes a generated tree.
type SyntheticSpec struct {
	Files int
	// MedianSize is the median file size; sizes follow a log-normal
	// distribution around it (most files small, a few large), like a venv.
	MedianSize int
	// Sigma is the log-normal's spread.
	Sigma float64
	// RandomFraction of files hold incompressible bytes (wheels, .so files).
	RandomFraction float64
	// FilesPerDir bounds directory fan-out.
	FilesPerDir int
	Seed        uint64
}

// makeSynthetic writes a tree following spec at dir and returns its logical size.
func makeSynthetic(dir string, spec SyntheticSpec) (int64, error) {
	g := newTextGen(spec.Seed)
	if spec.FilesPerDir <= 0 {
		spec.FilesPerDir = 40
	}
	var total int64
	for i := 0; i < spec.Files; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("pkg%03d", i/spec.FilesPerDir/10), fmt.Sprintf("mod%03d", i/spec.FilesPerDir))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return 0, err
		}
		size := int(float64(spec.MedianSize) * math.Exp(g.rng.NormFloat64()*spec.Sigma))
		size = max(0, min(size, 64<<20))
		var data []byte
		if g.rng.Float64() < spec.RandomFraction {
			data = g.random(size)
		} else {
			data = g.text(size)
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("file%05d.py", i)), data, 0o644); err != nil {
			return 0, err
		}
		total += int64(size)
	}
	return total, nil
}

// changeSmall applies change `small` to the venv at dir: remove one installed
// package of 10 MB or more with its dist-info (the smallest such, so the
// change is the same on every machine with the same packages), add a new
// package of about 5 MB with a dist-info, and append a line to 20 .py files.
// New files are written before the removal, so the file system's slow path
// for creating files soon after mass deletion is not hit by the change itself.
func changeSmall(dir string, seed uint64) error {
	sp, err := venvSitePackages(dir)
	if err != nil {
		sp = dir // a plain tree: work at its top
	}
	g := newTextGen(seed)
	pkg := fmt.Sprintf("benchpkg_%d", seed)
	if err := writePackage(sp, pkg, 5<<20, g); err != nil {
		return fmt.Errorf("change small: %w", err)
	}
	if err := appendToPyFiles(sp, 20, pkg, seed); err != nil {
		return fmt.Errorf("change small: %w", err)
	}
	victim, err := largePackage(sp, 10<<20)
	if err != nil {
		return fmt.Errorf("change small: %w", err)
	}
	for _, p := range victim {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("change small: %w", err)
		}
	}
	return nil
}

// writePackage adds an installable-looking package: module files of
// generated source totalling about size bytes and a dist-info.
func writePackage(sp, name string, size int, g *textGen) error {
	pdir := filepath.Join(sp, name)
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return err
	}
	const per = 64 << 10
	for i := 0; i*per < size; i++ {
		n := min(per, size-i*per)
		if err := os.WriteFile(filepath.Join(pdir, fmt.Sprintf("module_%03d.py", i)), g.text(n), 0o644); err != nil {
			return err
		}
	}
	di := filepath.Join(sp, name+"-1.0.dist-info")
	if err := os.MkdirAll(di, 0o755); err != nil {
		return err
	}
	meta := fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: 1.0\n", name)
	if err := os.WriteFile(filepath.Join(di, "METADATA"), []byte(meta), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(di, "INSTALLER"), []byte("bench\n"), 0o644)
}

// appendToPyFiles appends a line to n .py files spread evenly over the
// sorted list of the tree's .py files (skipping the package just added).
func appendToPyFiles(root string, n int, skip string, seed uint64) error {
	var pys []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == skip {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".py") {
			pys = append(pys, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(pys) == 0 {
		return fmt.Errorf("no .py files under %s", root)
	}
	sort.Strings(pys)
	step := max(1, len(pys)/n)
	for i := 0; i < n && i*step < len(pys); i++ {
		f, err := os.OpenFile(pys[(i*step+int(seed))%len(pys)], os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(f, "\n# bench change %d\n", seed)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// largePackage returns the paths of the smallest top-level package at least
// minSize bytes large, with its dist-info when one matches its name; for a
// tree without such a package, the largest top-level directory.
func largePackage(sp string, minSize int64) ([]string, error) {
	ents, err := os.ReadDir(sp)
	if err != nil {
		return nil, err
	}
	type cand struct {
		name string
		size int64
	}
	var cands []cand
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), "-info") || strings.HasPrefix(e.Name(), "_") || strings.HasPrefix(e.Name(), "benchpkg_") {
			continue
		}
		sz, err := treeSize(filepath.Join(sp, e.Name()))
		if err != nil {
			return nil, err
		}
		cands = append(cands, cand{e.Name(), sz})
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("no package directory in %s", sp)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].size < cands[j].size })
	pick := cands[len(cands)-1]
	for _, c := range cands {
		if c.size >= minSize {
			pick = c
			break
		}
	}
	paths := []string{filepath.Join(sp, pick.name)}
	norm := func(s string) string {
		return strings.ToLower(strings.ReplaceAll(strings.ReplaceAll(s, "-", "_"), ".", "_"))
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".dist-info") {
			if dist, _, ok := strings.Cut(e.Name(), "-"); ok && norm(dist) == norm(pick.name) {
				paths = append(paths, filepath.Join(sp, e.Name()))
			}
		}
	}
	return paths, nil
}

func treeSize(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// changeLarge replaces every third regular file (in sorted order) with new
// content of the same size: change `large`.
func changeLarge(root string, seed uint64) error {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	g := newTextGen(seed)
	for i := 0; i < len(files); i += 3 {
		info, err := os.Stat(files[i])
		if err != nil {
			return err
		}
		if err := os.WriteFile(files[i], g.text(int(info.Size())), info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

// changeTiny is the growth scenario's step: rewrite a few files and add one.
func changeTiny(root string, step int, seed uint64) error {
	g := newTextGen(seed + uint64(step))
	if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("step_%03d.py", step)), g.text(8<<10), 0o644); err != nil {
		return err
	}
	return appendToPyFiles(root, 5, "", seed+uint64(step))
}

// copyTree copies a tree with cp -a (untimed setup).
func copyTree(ctx context.Context, src, dst string) error {
	return exec.CommandContext(ctx, "cp", "-a", src, dst).Run()
}
