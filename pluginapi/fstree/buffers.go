package fstree

import (
	"math/bits"
	"sync"
)

// Buffers for file bodies are pooled by power-of-two size class, so reading
// and writing tens of thousands of small files does not allocate (and zero)
// every body anew.
const (
	minBufShift = 12 // 4 KiB
	maxBufShift = 22 // 4 MiB
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// getBuf returns a slice of length n, from a pool when n is small enough.
func getBuf(n int) []byte {
	c := bufClass(n)
	if c >= len(bufPools) {
		return make([]byte, n)
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<(c+minBufShift))
}

// putBuf returns b to its pool; b must not be used afterwards.
func putBuf(b []byte) {
	if b == nil {
		return
	}
	c := bufClass(cap(b))
	if c >= len(bufPools) || cap(b) != 1<<(c+minBufShift) {
		return
	}
	b = b[:0]
	bufPools[c].Put(&b)
}
