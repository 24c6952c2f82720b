package core

import (
	"math/bits"
	"sync"
)

// Buffer pools by power-of-two size class, from 4 KiB to 4 MiB (the
// chunker's largest chunk). A create copies every chunk once into one of
// these for the workers; pooling them keeps the garbage collector, and so
// the peak RSS, quiet.
//
// Buffers of largeBufClass and up are kept in free lists that the garbage
// collector does not empty, up to largeBufKeep bytes in all: a sync.Pool
// drops what it holds within two collections, and a create collects every
// ~80 ms (GOGC 25, cmd/ptest-snap), so the large classes, used in bursts
// (a run of big files, a run of 64-256 KiB modules), were refilled with
// fresh buffers over and over: an initial create of venv-full took 665
// new buffers, 100 MB, from getBuf, each one zeroed by the runtime
// (mallocgcLarge) and mostly faulted in anew, for at most 16 MiB of chunks
// in flight (createInFlightBytes). With the free lists it takes 349-370
// new buffers, 33-35 MB (the small classes' sync.Pools included).
const (
	minBufClass = 12
	maxBufClass = 22
	// largeBufClass: 32 KiB, where the runtime starts to allocate each
	// buffer as its own span, zeroed on allocation.
	largeBufClass = 15
	// largeBufKeep bounds the bytes the free lists keep: twice the chunk
	// bytes in flight, as buffers are rounded up to a power of two.
	largeBufKeep = 2 * createInFlightBytes
)

var bufPools [maxBufClass + 1]sync.Pool

// largeBufs are the free lists of the classes from largeBufClass.
var largeBufs struct {
	mu    sync.Mutex
	free  [maxBufClass + 1][][]byte
	bytes int
}

func bufClass(n int) int {
	if n <= 1<<minBufClass {
		return minBufClass
	}
	return bits.Len(uint(n - 1))
}

// getBuf returns a buffer of length n.
func getBuf(n int) []byte {
	c := bufClass(n)
	if c > maxBufClass {
		return make([]byte, n)
	}
	if c >= largeBufClass {
		lb := &largeBufs
		lb.mu.Lock()
		if k := len(lb.free[c]); k > 0 {
			b := lb.free[c][k-1]
			lb.free[c][k-1] = nil
			lb.free[c] = lb.free[c][:k-1]
			lb.bytes -= cap(b)
			lb.mu.Unlock()
			return b[:n]
		}
		lb.mu.Unlock()
		return make([]byte, n, 1<<c)
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<c)
}

// dropLargeBufs empties the free lists: a create's fileSaver calls it when
// it closes, so that a process does not keep their memory between creates
// (a concurrent create only loses their reuse).
func dropLargeBufs() {
	lb := &largeBufs
	lb.mu.Lock()
	for c := range lb.free {
		clear(lb.free[c])
		lb.free[c] = nil
	}
	lb.bytes = 0
	lb.mu.Unlock()
}

// putBuf returns a buffer from getBuf to its pool.
func putBuf(b []byte) {
	c := bits.Len(uint(cap(b))) - 1
	if c < minBufClass || c > maxBufClass || cap(b) != 1<<c {
		return
	}
	if c >= largeBufClass {
		lb := &largeBufs
		lb.mu.Lock()
		if lb.bytes+cap(b) <= largeBufKeep {
			lb.free[c] = append(lb.free[c], b)
			lb.bytes += cap(b)
		}
		lb.mu.Unlock()
		return
	}
	bufPools[c].Put(&b)
}
