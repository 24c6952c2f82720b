package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pypj/ptest-snap/store"
)

func (a *app) exportCommand() *cobra.Command {
	var (
		out      string
		asRecord bool
	)
	cmd := &cobra.Command{
		Use:   "export SNAPSHOT... -o FILE|-",
		Short: "Write snapshots to a self-contained archive, or one record as JSON",
		Long: `Write one or more snapshots — their records and every chunk and tree they need —
to one compressed archive with a checksum over everything. 'ptest-snap import'
reads it into any store. -o - writes the archive to stdout (for a pipe or ssh).

With --json and a single SNAPSHOT but no -o, print the snapshot's record alone,
in the shape of the original ptest report (snapshot_id, env_id, path, status,
created_at, config, resource_usage, allocated_ports, virtualenv_info /
docker_info), for tools that read that format.`,
		Example: examples(
			"ptest-snap export clean -o clean.ptsnap",
			"ptest-snap export clean after-tests -o - | ssh ci ptest-snap import -",
			"ptest-snap export --json clean > clean.json",
		),
		Args:              argsBetween(1, -1, "at least one SNAPSHOT"),
		ValidArgsFunction: a.completeSnapshots,
		RunE: func(cmd *cobra.Command, args []string) error {
			// --json without -o: the record alone. With -o it is an archive
			// export, and --json only shapes the summary.
			asRecord = a.jsonOut && out == ""
			if asRecord {
				if len(args) != 1 {
					return usagef(cmd, "export --json (without -o) prints one snapshot's record; give exactly one SNAPSHOT")
				}
				svc, err := a.service(cmd.Context())
				if err != nil {
					return err
				}
				rec, err := svc.ExportJSON(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return writeJSON(a.stdout, rec)
			}
			if out == "" {
				return usagef(cmd, "export needs -o FILE (or -o - for stdout)")
			}
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			if out == "-" {
				prog := a.newProgress("exporting", -1, true)
				_, err := svc.Export(cmd.Context(), args, a.stdout, prog)
				prog.done()
				return err
			}
			res, err := a.exportToFile(cmd, svc, args, out)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return writeJSON(a.stdout, res)
			}
			if a.quiet {
				return nil
			}
			fmt.Fprintf(a.stdout, "exported %d snapshots (%s chunks) to %s: %s\n",
				len(res.Snapshots), humanCount(res.Chunks), res.File, humanBytes(res.Bytes))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "archive `FILE` to write, or - for stdout")
	return cmd
}

// exportToFile writes the archive to a temporary file beside out and renames
// it into place only when complete, so an interrupted or failed export never
// leaves a truncated archive under the final name.
func (a *app) exportToFile(cmd *cobra.Command, svc service, refs []string, out string) (*exportJSON, error) {
	abs, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(abs), "."+filepath.Base(abs)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("cannot write the archive next to %s: %w", out, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	prog := a.newProgress("exporting", -1, true)
	res, err := svc.Export(cmd.Context(), refs, tmp, prog)
	prog.done()
	if err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), abs); err != nil {
		return nil, fmt.Errorf("write %s: %w", out, err)
	}
	ok = true
	res.File = abs
	return res, nil
}

func (a *app) importCommand() *cobra.Command {
	var rename bool
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Add the snapshots of an archive to the store",
		Long: `Read an archive written by 'ptest-snap export' (from FILE, or stdin with -)
and add its snapshots to the store. Every hash and the archive's checksum are
verified before anything becomes visible; chunks the store already has are
skipped. A truncated or damaged archive, a record of a newer format, a path
that would restore outside its target, or a name already used in this store
(unless --rename) is refused, and the store is left exactly as it was.

FILE may also be a snapshot record written by 'export --json': it is validated
and registered again, provided this store still holds all of its data.`,
		Example: examples(
			"ptest-snap import clean.ptsnap",
			"ptest-snap --store /mnt/other import --rename clean.ptsnap",
			"ssh build ptest-snap export clean -o - | ptest-snap import -",
		),
		Args: argsBetween(1, 1, "one FILE, or - for stdin"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader
			var total int64 = -1
			if args[0] == "-" {
				r = a.stdin
			} else {
				f, err := os.Open(args[0])
				if err != nil {
					if errors.Is(err, os.ErrNotExist) {
						return notFoundError{fmt.Errorf("archive %s does not exist", args[0])}
					}
					return fmt.Errorf("cannot read the archive: %w", err)
				}
				defer f.Close()
				if st, err := f.Stat(); err == nil {
					total = st.Size()
				}
				r = f
			}
			svc, err := a.service(cmd.Context())
			if err != nil {
				return err
			}
			prog := a.newProgress("importing", total, true)
			res, err := svc.Import(cmd.Context(), &countingReader{r: r, prog: prog}, rename, prog)
			prog.done()
			if err != nil {
				return err
			}
			if a.jsonOut {
				if res.Imported == nil {
					res.Imported = []importedJSON{}
				}
				return writeJSON(a.stdout, res)
			}
			for _, s := range res.Imported {
				if a.quiet {
					fmt.Fprintln(a.stdout, s.ID)
					continue
				}
				line := "imported " + s.ID
				if s.Name != "" {
					line += " (" + s.Name + ")"
				}
				if s.RenamedFrom != "" {
					line += ", renamed from " + s.RenamedFrom
				}
				fmt.Fprintln(a.stdout, line)
			}
			if !a.quiet {
				for _, id := range res.Skipped {
					fmt.Fprintf(a.stdout, "skipped %s: already in this store\n", id)
				}
				fmt.Fprintf(a.stdout, "%s new chunks (%s), %s already here\n",
					humanCount(res.ChunksNew), humanBytes(res.BytesNew), humanCount(res.ChunksSkipped))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&rename, "rename", false, "give an imported snapshot a new name when its name is taken")
	return cmd
}

// countingReader reports bytes read to a progress bar.
type countingReader struct {
	r    io.Reader
	prog *progress
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.prog.add(int64(n))
	return n, err
}

// notFoundError marks an error as "not found" (exit code 3).
type notFoundError struct{ err error }

func (e notFoundError) Error() string   { return e.err.Error() }
func (e notFoundError) Unwrap() []error { return []error{e.err, store.ErrNotFound} }
