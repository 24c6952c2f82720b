package store

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Badger v4 writes and reads its value-log files through shared memory
// mappings. Every page of a value log this process wrote stays mapped and
// resident, and counts in the process's RSS: storing venv-full (104 MB)
// would add ~100 MB of RSS on top of the heap, against a 300 MB budget for
// the whole process. The pages are page cache that the kernel could drop
// or keep; they need not be in our page tables. releaseMappedPages unmaps
// them from our address space with madvise(MADV_DONTNEED): for a shared
// file mapping that only drops our page-table entries (dirty data is kept
// in the page cache and written back as usual), and the next access
// re-faults the page from the page cache, so nothing is lost or re-read
// from disk.
//
// It must only ever touch live value-log mappings: DONTNEED on a range the
// process has meanwhile reused for anything else (the Go heap) would zero
// it. Badger maps, remaps (when a file is full it truncates and remaps it)
// and unmaps value-log files only while a write request is applied (every
// one of ours runs under s.gate), during value-log GC (under s.gcMu) and
// on Close (under s.gcMu), so holding both locks while reading
// /proc/self/maps and advising keeps every range we advise stable.
const (
	madvDontneed = 4
	// releaseEvery is how many bytes of chunks are written between two
	// releases.
	releaseEvery = 32 << 20
)

// releaseMappedPages drops our page-table entries for Badger's value-log
// mappings (see above). It gives up at once if a GC or Close is running.
func (s *Store) releaseMappedPages() {
	if s.mapsPrefix == "" || !s.gcMu.TryLock() {
		return
	}
	defer s.gcMu.Unlock()
	s.gate.Lock()
	defer s.gate.Unlock()
	if s.closed.Load() {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) != 6 || !strings.HasPrefix(fields[5], s.mapsPrefix) || !strings.HasSuffix(fields[5], ".vlog") {
			continue
		}
		start, end, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		lo, err1 := strconv.ParseUint(start, 16, 64)
		hi, err2 := strconv.ParseUint(end, 16, 64)
		if err1 != nil || err2 != nil || hi <= lo {
			continue
		}
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), madvDontneed)
	}
}
