package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The Docker scenarios: an image of about 100 MB built FROM scratch (there is
// no registry) holding the Docker engine's static test helper and 100 MB of
// data, and a running container that changed about 10 MB over it.

var dockerBaseImage = fmt.Sprintf("ptest-snap-bench:base-%d", os.Getpid())

// dockerReachable reports whether a Docker engine answers.
func dockerReachable(ctx context.Context) bool {
	return exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").Run() == nil
}

// dockerImage builds the base image once per harness run.
func (e *benchEnv) dockerImage(ctx context.Context) error {
	if _, ok := e.cache["docker-image"]; ok {
		return nil
	}
	bctx := e.fresh("docker-context")
	if err := os.MkdirAll(bctx, 0o755); err != nil {
		return err
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bctx, "testhelper"), "./plugins/docker/internal/testhelper")
	build.Dir = e.cfg.ModuleDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the container helper: %w\n%s", err, out)
	}
	g := newTextGen(100)
	// Half incompressible, half text: like an image's binaries and sources.
	half := e.cfg.DockerImageMB << 19
	if err := writeGenerated(filepath.Join(bctx, "data.bin"), half, true, g, 0o644); err != nil {
		return err
	}
	if err := writeGenerated(filepath.Join(bctx, "data.txt"), half, false, g, 0o644); err != nil {
		return err
	}
	dockerfile := "FROM scratch\nCOPY testhelper /testhelper\nCOPY data.bin data.txt /data/\nENTRYPOINT [\"/testhelper\"]\nCMD [\"sleep\"]\n"
	if err := os.WriteFile(filepath.Join(bctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	if err := run(ctx, cmd("docker", "build", "-q", "-t", dockerBaseImage, bctx).withEnv("DOCKER_BUILDKIT=0")); err != nil {
		return err
	}
	e.cache["docker-image"] = dockerBaseImage
	e.cleanups = append(e.cleanups, cmd("docker", "rmi", "-f", dockerBaseImage))
	return nil
}

// dockerContainer starts a container of the base image and changes mb MB in it.
func (e *benchEnv) dockerContainer(ctx context.Context, n, mb int) (string, error) {
	if err := e.dockerImage(ctx); err != nil {
		return "", err
	}
	name := fmt.Sprintf("ptest-snap-bench-%d-%d", os.Getpid(), e.seqNext())
	e.cleanups = append(e.cleanups, cmd("docker", "rm", "-f", name))
	if err := runAll(ctx,
		cmd("docker", "run", "-d", "--name", name, dockerBaseImage, "sleep"),
		cmd("docker", "exec", name, "/testhelper", "random", "/work/changes.bin", fmt.Sprint(mb<<20), fmt.Sprint(n+1)),
	); err != nil {
		return "", err
	}
	return name, nil
}

func (e *benchEnv) seqNext() int { e.seq++; return e.seq }

// dockerSnapshot: ptest-snap create of a running container vs docker commit
// + docker save | zstd -1; then a second snapshot after 1 MB more.
func dockerSnapshot(ctx context.Context, e *benchEnv, n int) (map[string]Sample, error) {
	c, err := e.dockerContainer(ctx, n, e.cfg.DockerChangeMB)
	if err != nil {
		return nil, err
	}
	res := map[string]Sample{}
	store := e.fresh("store")
	if res[toolSnap], err = e.timed(ctx, e.snap(store, "create", "--engine", "docker", "--name", "d1", c), store); err != nil {
		return nil, err
	}
	img, out := c+"-commit", e.fresh("saved")+".tar.zst"
	e.cleanups = append(e.cleanups, cmd("docker", "rmi", "-f", img))
	if res[toolDockerSave], err = e.timed(ctx, shell(fmt.Sprintf("docker commit %s %s >/dev/null && docker save %s | zstd -1 -T0 -q -o %q", c, img, img, out)), out); err != nil {
		return nil, err
	}
	if err := run2(ctx, cmd("docker", "exec", c, "/testhelper", "random", "/work/more.bin", fmt.Sprint(1<<20), fmt.Sprint(n+100))); err != nil {
		return nil, err
	}
	if res[toolSnapSecond], err = e.timed(ctx, e.snap(store, "create", "--engine", "docker", "--name", "d2", c), store); err != nil {
		return nil, err
	}
	return res, nil
}

// dockerRestore: ptest-snap restore to a new running container vs docker load
// of the saved image + docker run, both starting with the image absent.
func dockerRestore(ctx context.Context, e *benchEnv, n int) (map[string]Sample, error) {
	c, err := e.dockerContainer(ctx, n, e.cfg.DockerChangeMB)
	if err != nil {
		return nil, err
	}
	store, img, saved := e.fresh("store"), c+"-commit", e.fresh("saved")+".tar"
	if err := runAll(ctx,
		e.snap(store, "create", "--engine", "docker", "--name", "d1", c),
		cmd("docker", "commit", c, img),
		cmd("docker", "save", "-o", saved, img),
		cmd("docker", "rmi", img),
	); err != nil {
		return nil, err
	}
	res := map[string]Sample{}
	restored, peer := c+"-restored", c+"-peer"
	// Cleanups run last first: the containers go before the image they use
	// (`rmi -f` of an image in use only untags it, leaving it behind).
	e.cleanups = append(e.cleanups, cmd("docker", "rmi", "-f", img), cmd("docker", "rm", "-f", restored), cmd("docker", "rm", "-f", peer))
	if res[toolSnap], err = e.timed(ctx, e.snap(store, "restore", "d1", "--name", restored), ""); err != nil {
		return nil, err
	}
	// Remove what ptest-snap loaded (the capture's commit, a different
	// image from the peer's), so the peer, too, starts without an image
	// and no image is left behind.
	loaded, err := output(ctx, cmd("docker", "inspect", "--format", "{{.Image}}", restored))
	if err != nil {
		return nil, err
	}
	_ = run(ctx, cmd("docker", "rm", "-f", restored))
	_ = run(ctx, cmd("docker", "rmi", "-f", strings.TrimSpace(loaded)))
	_ = run(ctx, cmd("docker", "rmi", "-f", img))
	if res[toolDockerLoad], err = e.timed(ctx, shell(fmt.Sprintf("docker load -q -i %q >/dev/null && docker run -d --name %s %s sleep >/dev/null", saved, peer, img)), ""); err != nil {
		return nil, err
	}
	return res, nil
}
