package main

import (
	"archive/zip"
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// The "recreate venv from scratch" scenario needs what a user without
// ptest-snap would do to get the same venv back offline: `python3 -m venv`
// and `pip install --no-index` of every distribution the venv holds. No
// package index is reachable and the machine has no wheels of venv-full's
// distributions (they come from the base interpreter's site-packages), so the
// bench makes them: each installed distribution is packed back into a wheel
// from the files its dist-info's RECORD lists, as `pip wheel` would have
// built it. pip then installs them as it installs any wheel (unpacking,
// generating console scripts, compiling .pyc files), which is the work being
// timed.

// repackedWheel describes one wheel repackWheels made.
type repackedWheel struct {
	// Name is the distribution's name as its METADATA gives it.
	Name string
	// Path is the wheel file.
	Path string
	// Files is how many files the wheel carries (RECORD included).
	Files int
}

// repackWheels packs every *.dist-info distribution of site-packages that
// has a RECORD and a WHEEL file into a wheel in dir. Files a RECORD lists
// under __pycache__ are left out (pip compiles them on install), and so are
// the installer's own records (INSTALLER, REQUESTED, direct_url.json); files
// installed outside site-packages go into the wheel's .data directory
// (../../../bin → scripts, other ../../../ paths → data), as in the wheel
// they were installed from. Distributions without RECORD or WHEEL (egg-info,
// system packages) are returned in skipped.
func repackWheels(sitePackages, dir string) (wheels []repackedWheel, skipped []string, err error) {
	infos, err := filepath.Glob(filepath.Join(sitePackages, "*.dist-info"))
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(infos)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	for _, info := range infos {
		w, err := repackWheel(sitePackages, info, dir)
		if errors.Is(err, errNotAWheelInstall) {
			skipped = append(skipped, filepath.Base(info))
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("repack %s: %w", filepath.Base(info), err)
		}
		wheels = append(wheels, w)
	}
	return wheels, skipped, nil
}

var errNotAWheelInstall = errors.New("not installed from a wheel (no RECORD or WHEEL)")

func repackWheel(sitePackages, info, dir string) (repackedWheel, error) {
	meta, err := readHeaders(filepath.Join(info, "METADATA"))
	if err != nil {
		return repackedWheel{}, errNotAWheelInstall
	}
	wheelHdr, err := readHeaders(filepath.Join(info, "WHEEL"))
	if err != nil {
		return repackedWheel{}, errNotAWheelInstall
	}
	recordFile, err := os.Open(filepath.Join(info, "RECORD"))
	if err != nil {
		return repackedWheel{}, errNotAWheelInstall
	}
	rows, err := csv.NewReader(recordFile).ReadAll()
	recordFile.Close()
	if err != nil {
		return repackedWheel{}, fmt.Errorf("RECORD: %w", err)
	}
	name, version := first(meta["Name"]), first(meta["Version"])
	tag := compressedTag(wheelHdr["Tag"])
	if name == "" || version == "" || tag == "" {
		return repackedWheel{}, fmt.Errorf("METADATA or WHEEL lacks Name, Version or Tag")
	}
	dist := strings.NewReplacer("-", "_", ".", "_").Replace(name)
	infoName := filepath.Base(info)
	dataDir := strings.TrimSuffix(infoName, ".dist-info") + ".data"

	out := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.whl", dist, version, tag))
	f, err := os.Create(out)
	if err != nil {
		return repackedWheel{}, err
	}
	zw := zip.NewWriter(bufio.NewWriterSize(f, 1<<20))
	var record strings.Builder
	rec := csv.NewWriter(&record)
	files := 0
	add := func(arc, src string) error {
		body, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		st, err := os.Stat(src)
		if err != nil {
			return err
		}
		hdr := &zip.FileHeader{Name: arc, Method: zip.Deflate}
		hdr.SetMode(st.Mode().Perm())
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		if _, err := w.Write(body); err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		files++
		return rec.Write([]string{arc, "sha256=" + base64.RawURLEncoding.EncodeToString(sum[:]), fmt.Sprint(len(body))})
	}
	for _, row := range rows {
		if len(row) == 0 || row[0] == "" {
			continue
		}
		arc, ok := wheelPath(row[0], infoName, dataDir)
		if !ok {
			continue
		}
		src := filepath.Join(sitePackages, filepath.FromSlash(row[0]))
		if _, err := os.Lstat(src); errors.Is(err, os.ErrNotExist) {
			continue // removed since install (a pip upgrade's leftovers)
		}
		if err := add(arc, src); err != nil {
			f.Close()
			return repackedWheel{}, err
		}
	}
	rec.Write([]string{infoName + "/RECORD", "", ""})
	rec.Flush()
	w, err := zw.Create(infoName + "/RECORD")
	if err == nil {
		_, err = io.WriteString(w, record.String())
	}
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = f.Close()
	} else {
		f.Close()
	}
	if err != nil {
		return repackedWheel{}, fmt.Errorf("write %s: %w", out, err)
	}
	return repackedWheel{Name: name, Path: out, Files: files + 1}, nil
}

// wheelPath maps a RECORD path (relative to site-packages) to its place in
// the wheel, or reports that it does not belong in one.
func wheelPath(rel, infoName, dataDir string) (string, bool) {
	rel = path.Clean(rel)
	switch {
	case rel == infoName+"/RECORD", rel == infoName+"/INSTALLER", rel == infoName+"/REQUESTED", rel == infoName+"/direct_url.json":
		return "", false
	case strings.Contains("/"+rel+"/", "/__pycache__/"):
		return "", false
	case strings.HasPrefix(rel, "../../../bin/"):
		return dataDir + "/scripts/" + strings.TrimPrefix(rel, "../../../bin/"), true
	case strings.HasPrefix(rel, "../../../"):
		rest := strings.TrimPrefix(rel, "../../../")
		if strings.HasPrefix(rest, "../") {
			return "", false
		}
		return dataDir + "/data/" + rest, true
	case strings.HasPrefix(rel, "../"), path.IsAbs(rel):
		return "", false
	}
	return rel, true
}

// compressedTag joins a wheel's Tag lines (py3-none-any, ...) into the
// compressed tag set of its file name (py2.py3-none-any).
func compressedTag(tags []string) string {
	var parts [3][]string
	for _, t := range tags {
		f := strings.Split(t, "-")
		if len(f) != 3 {
			return ""
		}
		for i, p := range f {
			if !slices.Contains(parts[i], p) {
				parts[i] = append(parts[i], p)
			}
		}
	}
	if len(parts[0]) == 0 {
		return ""
	}
	return strings.Join(parts[0], ".") + "-" + strings.Join(parts[1], ".") + "-" + strings.Join(parts[2], ".")
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// readHeaders reads the RFC 822 style headers of a METADATA or WHEEL file,
// every value of each name in order (the body after the blank line is
// ignored).
func readHeaders(file string) (map[string][]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			continue
		}
		k = strings.TrimSpace(k)
		h[k] = append(h[k], strings.TrimSpace(v))
	}
	return h, sc.Err()
}
