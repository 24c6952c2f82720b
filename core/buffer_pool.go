package core

import (
	"math/bits"
	"sync"
)

// Buffer pools by power-of-two size class, from 4 KiB to 4 MiB (the
// chunker's largest chunk). A create copies every chunk once into one of
// these for the workers; pooling them keeps the garbage collector, and so
// the peak RSS, quiet.
const (
	minBufClass = 12
	maxBufClass = 22
)

var bufPools [maxBufClass + 1]sync.Pool

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
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<c)
}

// putBuf returns a buffer from getBuf to its pool.
func putBuf(b []byte) {
	c := bits.Len(uint(cap(b))) - 1
	if c < minBufClass || c > maxBufClass || cap(b) != 1<<c {
		return
	}
	bufPools[c].Put(&b)
}
