package pluginapi

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The shared-memory body ring: the fast path for capture bodies between a
// host and a Go plugin on the same machine. Moving bodies through gRPC
// costs a copy into the message, TLS encryption, a socket write, a socket
// read, TLS decryption and a copy out of the message — about as much CPU as
// the whole in-process capture. With the ring, the plugin reads a file
// straight into memory the host also maps and sends only the frame's
// position; the host copies it out into its own memory (so the plugin
// cannot change bytes the host is hashing) and hands the ring space back.
//
// The host creates the ring (a memfd) and passes it to the plugin as file
// descriptor 3, naming it in $PTEST_SNAP_BODY_RING_V2_FD. Layout: a 4 KiB
// header, then the data bytes (RingSize in a ring this host makes; a
// plugin takes the size from the descriptor's). The header holds,
// little-endian and accessed atomically: at 0 the consumed position (uint64, written by the
// consumer), at 8 the producer's waiting flag (uint32), at 12 the wake
// sequence (uint32, a futex word). Positions count bytes written since the
// ring was made and never wrap; a frame at position p lies at data offset
// p mod the data size and never crosses the end.
//
// A producer (the plugin in Capture, the host in Restore) that finds the
// ring full sleeps in futex(2) on the wake sequence, which works across the
// two processes because the mapping is shared. It is woken, by a bump of
// the sequence, when the consumer hands space back (the consumer bumps it
// only while the waiting flag is set, so a busy ring costs no system calls,
// and then at most once per wakeEvery bytes) or, from its own process, when its call ends or its context is done: it
// never polls. The waiting flag is set before the producer checks for room
// for the last time, and the consumer publishes the consumed position
// before it reads the flag, so a wake-up cannot be lost. (Version 1 of the
// layout had no wake words and the producer polled; the variable's name
// changed with the layout so that two builds never share a ring.)

// RingSize is the data size of the shared-memory body ring the host makes.
//
// Every page of the ring a producer touches first costs it a page fault
// that allocates and clears a page of shared memory (shmem_fault,
// clear_page, ~1.6 us a page here): the ring was 16 MiB, and an in-place
// undo of change small on venv-full, whose 12 MB of bodies go through it
// once, faulted in ~3,000 pages of it in the host (perf record -e
// page-faults), a create or full restore all 4,096. The producer never
// needs more than a few batches (BatchBytes each) in flight, since the
// consumer hands a frame back as soon as it has copied it out: with
// 4 MiB, whose pages are reused lap after lap, the undo faults ~1,000
// and takes 6-10 ms less CPU (CLI+engine, 2 x 20 alternating undos on
// tmpfs), and a full create and a full restore of venv-full take no more.
const RingSize = 4 << 20

// The data sizes a plugin accepts in a ring the host passes: room for two
// of the largest frames at least, whole pages, and not absurdly large.
const (
	minRingSize = 2 * MaxFrameSize
	maxRingSize = 1 << 30
)

const (
	ringHeader = 4096
	// ringFDEnv names the plugin's file descriptor of the ring.
	ringFDEnv = "PTEST_SNAP_BODY_RING_V2_FD"
	// ringFD is the descriptor the ring gets in the plugin (ExtraFiles[0]).
	ringFD = 3
)

// bodyRing is one mapping of the ring, on either side.
type bodyRing struct {
	mem  []byte
	data []byte
	// mu guards busy and closed: one capture at a time uses the ring, and
	// the mapping goes when the ring is closed and not in use.
	mu     sync.Mutex
	busy   bool
	closed bool
	// next is the consumer's expected position of the next frame; head is
	// the producer's position of the next frame it writes.
	next, head uint64
	// wakeAt is the consumer's position from which it wakes a waiting
	// producer again (handBack).
	wakeAt uint64
}

func (r *bodyRing) consumedPtr() *uint64 { return (*uint64)(unsafe.Pointer(&r.mem[0])) }
func (r *bodyRing) waitingPtr() *uint32  { return (*uint32)(unsafe.Pointer(&r.mem[8])) }
func (r *bodyRing) wakeSeqPtr() *uint32  { return (*uint32)(unsafe.Pointer(&r.mem[12])) }

// futex(2) operations on a word shared between processes (so without
// FUTEX_PRIVATE_FLAG).
const (
	futexWait = 0 // FUTEX_WAIT
	futexWake = 1 // FUTEX_WAKE
)

// wake bumps the wake sequence and wakes whoever sleeps on it, in either
// process.
func (r *bodyRing) wake() {
	seq := r.wakeSeqPtr()
	atomic.AddUint32(seq, 1)
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(seq)), futexWake, math.MaxInt32, 0, 0, 0)
}

// sleep blocks until the wake sequence is no longer seen, or a signal
// interrupts it (the caller checks again either way).
func (r *bodyRing) sleep(seen uint32) {
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(r.wakeSeqPtr())), futexWait, uintptr(seen), 0, 0, 0)
}

// acquire reserves the ring for one capture; false if another has it or
// it is closed (that capture sends its bodies inline).
func (r *bodyRing) acquire() bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy || r.closed {
		return false
	}
	r.busy = true
	r.wakeAt = 0
	return true
}

// release ends a capture's use of the ring.
func (r *bodyRing) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.busy = false
	if r.closed {
		r.unmapLocked()
	}
}

// close unmaps the ring now, or when the capture using it releases it.
func (r *bodyRing) close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if !r.busy {
		r.unmapLocked()
	}
}

func (r *bodyRing) unmapLocked() {
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
		r.mem, r.data = nil, nil
	}
}

// ringMapFlags map the ring shared, without MAP_POPULATE. Populating
// 16 MiB of fresh shared memory took 9-17 ms of the host's launch, and it
// holds the process's mmap lock meanwhile: every other mmap of the host
// (a new thread's stack, Badger's files while the store opens beside the
// launch) waited for it, 14.5 ms of a second create's store open (strace
// -T). A create that moves few bodies (a second create of venv-full: ~5 MB
// of the ring) faults in only the pages it uses; one that fills the ring
// faults each page once per process (~1-2.5 us a page, ~4 ms a process
// for 4,096 pages where populating cost ~9.6 ms in the host and ~1.8 ms in
// the plugin).
const ringMapFlags = unix.MAP_SHARED

// newHostRing creates a ring and returns it with the file to hand to the
// plugin.
func newHostRing() (*bodyRing, *os.File, error) {
	fd, err := unix.MemfdCreate("ptest-snap-body-ring", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("body ring: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ptest-snap-body-ring")
	if err := f.Truncate(ringHeader + RingSize); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("body ring: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, ringHeader+RingSize, unix.PROT_READ|unix.PROT_WRITE, ringMapFlags)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("body ring: %w", err)
	}
	return &bodyRing{mem: mem, data: mem[ringHeader:]}, f, nil
}

// openPluginRing maps the ring the host passed, if it did.
func openPluginRing() *bodyRing {
	v := os.Getenv(ringFDEnv)
	if v == "" {
		return nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil {
		return nil
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return nil
	}
	size := st.Size - ringHeader
	if size < minRingSize || size > maxRingSize || size%ringHeader != 0 {
		return nil
	}
	mem, err := unix.Mmap(fd, 0, int(ringHeader+size), unix.PROT_READ|unix.PROT_WRITE, ringMapFlags)
	_ = unix.Close(fd)
	if err != nil {
		return nil
	}
	return &bodyRing{mem: mem, data: mem[ringHeader:]}
}

// reserve returns room for the next frame of at most n bytes at the
// producer's head, waiting until the consumer has consumed enough; flush
// sends the frames written so far before waiting, or the consumer could
// never consume them.
//
// The wait ends when ctx is done, with its cause: the caller's ctx ends
// when the call is over (the peer answered, went away, or the caller gave
// up), so nobody waits for space that will never be handed back.
func (r *bodyRing) reserve(ctx context.Context, n int, flush func() error) (uint64, []byte, error) {
	size := uint64(len(r.data))
	off := r.head % size
	want := min(uint64(n), size-off)
	flushed := false
	// woken is closed when the wake-up for ctx has run; stop unregisters it.
	var woken chan struct{}
	var stop func() bool
	defer func() {
		if stop == nil {
			return
		}
		atomic.StoreUint32(r.waitingPtr(), 0)
		if !stop() {
			<-woken // it runs now: let it finish before the ring can go
		}
	}()
	for {
		seen := atomic.LoadUint32(r.wakeSeqPtr())
		consumed := atomic.LoadUint64(r.consumedPtr())
		if consumed > r.head {
			return 0, nil, fmt.Errorf("body ring: consumer at %d beyond the producer's position %d", consumed, r.head)
		}
		if r.head+want-consumed <= size {
			return r.head, r.data[off : off+want], nil
		}
		if err := ctx.Err(); err != nil {
			return 0, nil, context.Cause(ctx)
		}
		switch {
		case !flushed:
			if err := flush(); err != nil {
				return 0, nil, err
			}
			flushed = true
		case stop == nil:
			// Ask to be woken, then look again before sleeping.
			woken = make(chan struct{})
			stop = context.AfterFunc(ctx, func() {
				r.wake()
				close(woken)
			})
			atomic.StoreUint32(r.waitingPtr(), 1)
		default:
			r.sleep(seen)
		}
	}
}

// view checks that the frame at position pos is the one expected next (the
// consumer's side: the host in Capture, the plugin in Restore) and returns
// it where it lies in the ring, still the consumer's: its space
// goes back to the producer only with handBack, which the consumer calls
// once it has copied the frame out (or skipped it), and before it views
// the next one. The bytes are shared with the producer, which may be
// hostile: a consumer copies each byte out once and uses only its copy.
func (r *bodyRing) view(pos uint64, length uint32) ([]byte, error) {
	size := uint64(len(r.data))
	switch {
	case pos != r.next:
		return nil, protocolErrorf("shared frame at ring position %d, expected %d", pos, r.next)
	case length > MaxFrameSize:
		return nil, protocolErrorf("shared frame of %d bytes exceeds the %d-byte limit", length, MaxFrameSize)
	case pos%size+uint64(length) > size:
		return nil, protocolErrorf("shared frame at %d of %d bytes crosses the ring's end", pos, length)
	}
	off := pos % size
	r.next = pos + uint64(length)
	return r.data[off : off+uint64(length) : off+uint64(length)], nil
}

// wakeEvery is how many bytes a consumer hands back between two wake-ups
// of a producer that waits for space.
//
// The producer stays flagged as waiting from the moment it finds the ring
// full until it runs again, which on a busy machine is milliseconds: waking
// it at every frame handed back meanwhile (every small file's body is a
// frame) cost the host a futex system call per frame, 1.1-1.4 % of its CPU
// in a create of venv-full (perf: bodyRing.wake), where the plugin fills
// the ring faster than the host stores it. Waking it once per wakeEvery is
// enough: a producer sleeps only when more than RingSize-MaxFrameSize bytes
// it has sent are unconsumed and it lacks at most MaxFrameSize (the frame
// it wants room for), so the consumer, consuming on, passes the next
// wake-up point before the ring runs dry, and the producer finds its room
// within two wake-ups of going to sleep, never starving the consumer. This
// is the consumer's own rule: a producer of any build (one that sleeps
// again without setting the flag anew, as this one does) is woken as
// before, only less often.
const wakeEvery = MaxFrameSize

// handBack gives the space of the frames viewed so far back to the
// producer, waking it if it waits for space (at most once per wakeEvery
// bytes handed back).
func (r *bodyRing) handBack() {
	atomic.StoreUint64(r.consumedPtr(), r.next)
	if r.next >= r.wakeAt && atomic.LoadUint32(r.waitingPtr()) != 0 {
		r.wakeAt = r.next + wakeEvery
		r.wake()
	}
}
