// Command testhelper is the only program inside the images the Docker
// engine's tests build: the machine has no registry and no images, so tests
// build `FROM scratch` images holding this static binary (CGO_ENABLED=0).
//
// Usage:
//
//	testhelper write PATH CONTENT      write CONTENT to PATH (parents created)
//	testhelper random PATH SIZE SEED   write SIZE pseudo-random bytes from SEED
//	testhelper rm PATH                 remove PATH
//	testhelper cat PATH                print PATH's content
//	testhelper chmod PATH MODE         chmod PATH to the octal MODE
//	testhelper chown PATH UID GID      chown PATH
//	testhelper env                     print the environment, one VAR=value a line
//	testhelper serve ADDR              answer HTTP on ADDR with "ok" until stopped
//	testhelper sleep                   sleep until stopped
//	testhelper exit CODE               exit with CODE
package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "testhelper:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command")
	}
	need := func(n int) error {
		if len(args) != n+1 {
			return fmt.Errorf("%s needs %d arguments", args[0], n)
		}
		return nil
	}
	switch args[0] {
	case "write":
		if err := need(2); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(args[1]), 0o755); err != nil {
			return err
		}
		return os.WriteFile(args[1], []byte(args[2]), 0o644)
	case "random":
		if err := need(3); err != nil {
			return err
		}
		size, err := strconv.ParseInt(args[2], 10, 64)
		if err != nil {
			return err
		}
		seed, err := strconv.ParseUint(args[3], 10, 64)
		if err != nil {
			return err
		}
		return writeRandom(args[1], size, seed)
	case "rm":
		if err := need(1); err != nil {
			return err
		}
		return os.RemoveAll(args[1])
	case "cat":
		if err := need(1); err != nil {
			return err
		}
		b, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(b)
		return err
	case "chmod":
		if err := need(2); err != nil {
			return err
		}
		mode, err := strconv.ParseUint(args[2], 8, 32)
		if err != nil {
			return err
		}
		return os.Chmod(args[1], os.FileMode(mode))
	case "chown":
		if err := need(3); err != nil {
			return err
		}
		uid, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		gid, err := strconv.Atoi(args[3])
		if err != nil {
			return err
		}
		return os.Lchown(args[1], uid, gid)
	case "env":
		env := os.Environ()
		sort.Strings(env)
		for _, kv := range env {
			fmt.Println(kv)
		}
		return nil
	case "serve":
		if err := need(1); err != nil {
			return err
		}
		go waitSignal()
		return http.ListenAndServe(args[1], http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "ok")
		}))
	case "sleep":
		waitSignal()
		return nil
	case "exit":
		if err := need(1); err != nil {
			return err
		}
		code, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		os.Exit(code)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// waitSignal returns the process's exit on SIGTERM or SIGINT: as PID 1 in a
// container the default actions are ignored, and a stop would otherwise wait
// for the kill timeout.
func waitSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
	os.Exit(0)
}

// writeRandom writes size bytes of a seeded pseudo-random stream, so tests
// and benchmarks get incompressible data that is the same on every run.
func writeRandom(path string, size int64, seed uint64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var buf [8]byte
	for n := int64(0); n < size; n += 8 {
		v := r.Uint64()
		for i := range buf {
			buf[i] = byte(v >> (8 * i))
		}
		k := int64(8)
		if size-n < 8 {
			k = size - n
		}
		if _, err := w.Write(buf[:k]); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
