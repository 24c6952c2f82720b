package docker

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
	"github.com/zeebo/blake3"

	"github.com/pypj/ptest-snap/pluginapi"
)

// Benchmarks: an image of about 100 MB (the helper and 100 MiB of
// pseudo-random data) and a container that changed 10 MiB; each ptest-snap
// figure is measured beside the docker CLI doing the same job in the same
// run:
//
//	go test -run '^$' -bench . -benchtime 3x ./plugins/docker/
//
// The capture's writer stands in for the host's work on each body (BLAKE3
// and zstd at its fastest level), so the figure is comparable with
// `docker save | zstd -1`; the full pipeline (CDC, Badger) is measured by
// the bench/ harness.

var (
	benchOnce  sync.Once
	benchImage string
	benchErr   error
)

// setupBenchImage builds the 100 MB image once per test binary; runMain
// removes it.
func setupBenchImage(b *testing.B) string {
	needDocker(b)
	benchOnce.Do(func() {
		helper, err := os.ReadFile(helperBin)
		if err != nil {
			benchErr = err
			return
		}
		benchImage = runPrefix + "big:latest"
		extraImages = append(extraImages, benchImage)
		benchErr = buildImage(context.Background(), benchImage, map[string][]byte{"helper": helper},
			"FROM scratch\nCOPY helper /bin/helper\nRUN [\"/bin/helper\", \"random\", \"/data/base.bin\", \"104857600\", \"42\"]\nCMD [\"/bin/helper\", \"sleep\"]\n")
	})
	require.NoError(b, benchErr)
	return benchImage
}

// benchContainer runs a container of the big image with 10 MiB changed.
func benchContainer(b *testing.B, cl *cleaner) (name, id string) {
	img := setupBenchImage(b)
	name = uniqueName(b, "bench")
	cl.prefix(name)
	id = runContainer(b, name, &container.Config{Image: img}, nil, nil, true)
	execIn(b, id, "random", "/data/changed.bin", strconv.Itoa(10<<20), "43")
	return name, id
}

// hostSink is a CaptureWriter doing what the host does with a body that is
// not deduplicated: hash it and compress it (the output is dropped).
type hostSink struct {
	enc   *zstd.Encoder
	bytes int64
}

func (s *hostSink) WriteMetadata(context.Context, pluginapi.Metadata) error { return nil }
func (s *hostSink) BeginStream(context.Context, string) error               { return nil }
func (s *hostSink) WriteEntry(ctx context.Context, e *pluginapi.Entry, body io.Reader) error {
	if body == nil {
		return nil
	}
	h := blake3.New()
	s.enc.Reset(io.Discard)
	n, err := io.Copy(io.MultiWriter(h, s.enc), body)
	s.bytes += n
	if err != nil {
		return err
	}
	return s.enc.Close()
}

func sh(b *testing.B, script string) string {
	b.Helper()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	require.NoError(b, err, "%s: %s", script, out)
	return strings.TrimSpace(string(out))
}

func BenchmarkCapture(b *testing.B) {
	cl := newCleaner(b)
	name, id := benchContainer(b, cl)
	e := New()
	defer e.Close()
	ctx := context.Background()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	require.NoError(b, err)

	b.Run("ptest-snap", func(b *testing.B) {
		for b.Loop() {
			s := &hostSink{enc: enc}
			require.NoError(b, e.Capture(ctx, &pluginapi.CaptureRequest{Target: name}, s))
			b.SetBytes(s.bytes)
		}
	})
	b.Run("docker-commit-save-zstd", func(b *testing.B) {
		for b.Loop() {
			img := sh(b, "docker commit "+id)
			sh(b, "docker save "+img+" | zstd -1 -q -c > /dev/null")
			b.StopTimer()
			sh(b, "docker rmi "+img)
			b.StartTimer()
		}
	})
	// Second snapshot after another 1 MiB: bytes a CDC store keeps new.
	b.Run("second-snapshot-new-bytes", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			chunks := newChunkSet()
			c1 := captureOf(b, e, name, nil, chunks, nil)
			before := chunks.newBytes
			execIn(b, id, "random", "/data/more-"+strconv.Itoa(i)+".bin", strconv.Itoa(1<<20), strconv.Itoa(1000+i))
			c2 := captureOf(b, e, name, c1, chunks, nil)
			b.ReportMetric(float64(chunks.newBytes-before), "new-B")
			b.ReportMetric(float64(c2.sentBytes), "sent-B")
		}
	})
}

func BenchmarkRestore(b *testing.B) {
	cl := newCleaner(b)
	name, id := benchContainer(b, cl)
	e := New()
	defer e.Close()
	ctx := context.Background()
	c := captureOf(b, e, name, nil, nil, nil)
	m := metaOf(b, c)
	cl.image(m.Image.ID)
	dir := b.TempDir()
	saved := filepath.Join(dir, "saved.tar")
	img := sh(b, "docker commit "+id)
	cl.image(img)
	sh(b, fmt.Sprintf("docker save %s > %s && docker rmi %s", img, saved, img))

	removeAll := func(container, img string) {
		_ = testCli.ContainerRemove(ctx, container, containerRemoveForce)
		_, _ = testCli.ImageRemove(ctx, img, image.RemoveOptions{Force: true, PruneChildren: true})
	}
	b.Run("ptest-snap", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			res, err := e.Restore(ctx, c.restoreRequest(fmt.Sprintf("%s-r%d", name, i)), &reader{c: c})
			require.NoError(b, err)
			b.StopTimer()
			removeAll(res.Target, m.Image.ID)
			b.StartTimer()
		}
	})
	b.Run("docker-load-run", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			sh(b, "docker load -q -i "+saved)
			cname := fmt.Sprintf("%s-d%d", name, i)
			sh(b, fmt.Sprintf("docker run -d --name %s %s", cname, img))
			b.StopTimer()
			removeAll(cname, img)
			b.StartTimer()
		}
	})
}

var containerRemoveForce = container.RemoveOptions{Force: true}
