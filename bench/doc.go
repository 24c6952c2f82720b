// Command bench answers one question with numbers: is ptest-snap faster and
// smaller than what a user would use instead, on the same data, in the same
// run?
//
// It generates its datasets (never committed), then times every scenario for
// ptest-snap and for every peer present on the machine (tar | zstd, cp -a,
// restic, kopia, docker commit + save), interleaved run by run so that each
// ratio ptest-snap / peer is computed pair by pair under the same load. Every
// tool runs as a child process, so wall time, CPU time and peak RSS come from
// the kernel's accounting (wait4), the same for all.
//
// Output: a markdown table on stdout, results.json and ratios.png in -out.
//
//	go run ./bench -runs 5            # the full run on venv-full
//	go run ./bench -dataset synthetic -synthetic-files 2000 -runs 3
package main
