package virtualenv

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// pep503Separators are the runs PEP 503 folds into one "-".
var pep503Separators = regexp.MustCompile(`[-_.]+`)

// normalizeName returns the PEP 503 normalised form of a distribution name:
// lower case, runs of "-", "_" and "." replaced by one "-".
func normalizeName(name string) string {
	return pep503Separators.ReplaceAllString(strings.ToLower(strings.TrimSpace(name)), "-")
}

// distributions is what a scan of a venv's site-packages found.
type distributions struct {
	// Installed maps normalised name → version.
	Installed map[string]string
	// Editable maps normalised name → the project directory of an
	// editable install.
	Editable map[string]string
	// SitePackages lists the scanned directories, relative to the venv.
	SitePackages []string
}

// sitePackagesDirs returns the venv's site-packages directories
// (lib/python3.X/site-packages, lib/pypy3.X/site-packages, ...) relative to
// the venv, skipping symlinked ones (lib64 → lib) so nothing counts twice.
func sitePackagesDirs(venv string) []string {
	var dirs []string
	for _, lib := range []string{"lib", "lib64"} {
		fi, err := os.Lstat(filepath.Join(venv, lib))
		if err != nil || !fi.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(venv, lib))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			rel := lib + "/" + e.Name() + "/site-packages"
			if fi, err := os.Lstat(filepath.Join(venv, rel)); err == nil && fi.IsDir() {
				dirs = append(dirs, rel)
			}
		}
	}
	// Windows-style layout, for venvs made on Windows and copied here.
	if fi, err := os.Lstat(filepath.Join(venv, "Lib", "site-packages")); err == nil && fi.IsDir() {
		dirs = append(dirs, "Lib/site-packages")
	}
	sort.Strings(dirs)
	return dirs
}

// scanDistributions reads the installed distributions of a venv from the
// headers of *.dist-info/METADATA (and legacy *.egg-info/PKG-INFO) without
// running Python. Editable installs are found from direct_url.json
// (PEP 610, dir_info.editable) and from legacy *.egg-link files.
func scanDistributions(venv string) distributions {
	d := distributions{Installed: map[string]string{}, Editable: map[string]string{}}
	buf := make([]byte, metadataReadSize)
	for _, rel := range sitePackagesDirs(venv) {
		d.SitePackages = append(d.SitePackages, rel)
		dir := filepath.Join(venv, rel)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			name := e.Name()
			switch {
			case strings.HasSuffix(name, ".dist-info") && e.IsDir():
				n, v, ok := readMetadataHeaders(filepath.Join(dir, name, "METADATA"), buf)
				if !ok {
					continue
				}
				key := normalizeName(n)
				d.Installed[key] = v
				if target := editableTarget(filepath.Join(dir, name, "direct_url.json")); target != "" {
					d.Editable[key] = target
				}
			case strings.HasSuffix(name, ".egg-info"):
				pkgInfo := filepath.Join(dir, name)
				if e.IsDir() {
					pkgInfo = filepath.Join(pkgInfo, "PKG-INFO")
				}
				if n, v, ok := readMetadataHeaders(pkgInfo, buf); ok {
					if _, have := d.Installed[normalizeName(n)]; !have {
						d.Installed[normalizeName(n)] = v
					}
				}
			case strings.HasSuffix(name, ".egg-link") && !e.IsDir():
				// setup.py develop: the first line is the project directory;
				// its *.egg-info there names the distribution.
				data, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					continue
				}
				project, _, _ := strings.Cut(string(data), "\n")
				project = strings.TrimSpace(project)
				key := normalizeName(strings.TrimSuffix(name, ".egg-link"))
				d.Editable[key] = project
				if infos, _ := filepath.Glob(filepath.Join(project, "*.egg-info", "PKG-INFO")); len(infos) > 0 {
					if n, v, ok := readMetadataHeaders(infos[0], buf); ok {
						d.Installed[normalizeName(n)] = v
						continue
					}
				}
				if _, have := d.Installed[key]; !have {
					d.Installed[key] = ""
				}
			}
		}
	}
	return d
}

// metadataReadSize is the scanner's first buffer for a metadata file,
// reused from file to file: Name and Version are near the top (core
// metadata puts them right after Metadata-Version), so one read of 4 KiB
// almost always finds both, and a longer line grows the buffer. Each file
// had a fresh 64 KiB buffer before, allocated, zeroed and faulted in, and
// the read copied in up to 64 KiB of the long description after the
// headers: BenchmarkMetadata on venv-full (94 distributions), loaded
// machine, 3 alternating runs each: 2.6-6.5 ms -> 0.84-1.7 ms. The
// metadata is collected before the capture sends its first file
// (fstree.Capture's Prelude), so the host waits for it.
const metadataReadSize = 4 << 10

// readMetadataHeaders returns the Name and Version headers of a core
// metadata file (RFC 822 style; headers end at the first blank line). buf
// is the scanner's first buffer, which the caller may reuse afterwards.
func readMetadataHeaders(path string, buf []byte) (name, version string, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(buf, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
		k, v, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		switch strings.ToLower(string(bytes.TrimSpace(k))) {
		case "name":
			if name == "" {
				name = string(bytes.TrimSpace(v))
			}
		case "version":
			if version == "" {
				version = string(bytes.TrimSpace(v))
			}
		}
		if name != "" && version != "" {
			break
		}
	}
	return name, version, name != ""
}

// editableTarget returns the project directory of an editable install
// recorded in direct_url.json (PEP 610), or "" when the file is absent or
// the install is not editable.
func editableTarget(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var du struct {
		URL     string `json:"url"`
		DirInfo *struct {
			Editable bool `json:"editable"`
		} `json:"dir_info"`
	}
	if json.Unmarshal(data, &du) != nil || du.DirInfo == nil || !du.DirInfo.Editable {
		return ""
	}
	u, err := url.Parse(du.URL)
	if err != nil || u.Scheme != "file" {
		return du.URL
	}
	return u.Path
}
