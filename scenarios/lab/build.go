package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// Binaries are the programs the lab runs, each built from ./<package> into one image.
var Binaries = map[string]string{
	"catalog":       "./services/catalog/cmd/catalog",
	"payments":      "./services/payments/cmd/payments",
	"orders":        "./services/orders/cmd/orders",
	"gateway":       "./services/gateway/cmd/gateway",
	"notifications": "./services/notifications/cmd/notifications",
	"nats-server":   "./events/cmd/nats-server",
	"toxiproxy":     "./scenarios/lab/toxiproxy/cmd/toxiproxy",
	// The registry of the replicated topology, built from go.etcd.io/etcd/server/v3 (Config.Replicas).
	"etcd": "./discovery/cmd/etcd",
}

const (
	dockerfile = "deploy/docker/Dockerfile"
	rootfsDir  = "deploy/docker/rootfs"
	binDir     = "bin/linux-amd64"
	imageRepo  = "reslab/"
)

// RepoRoot finds the module root (the directory holding go.mod) from the working directory up.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, dockerfile)); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("lab: no repository root (go.mod beside deploy/docker/Dockerfile) above the working directory")
		}
		dir = parent
	}
}

// BuildBinaries compiles the static linux binaries of names into root/bin/linux-amd64 with one go build
// (the go build cache makes an unchanged binary nearly free). Each file is replaced atomically, so a
// concurrent build never leaves a half-written binary behind.
func BuildBinaries(ctx context.Context, root string, names []string, progress io.Writer) error {
	tmp, err := os.MkdirTemp(filepath.Join(root, binDir), ".build-")
	if err != nil {
		if err := os.MkdirAll(filepath.Join(root, binDir), 0o755); err != nil {
			return err
		}
		if tmp, err = os.MkdirTemp(filepath.Join(root, binDir), ".build-"); err != nil {
			return err
		}
	}
	defer os.RemoveAll(tmp)
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", tmp + string(os.PathSeparator)}
	for _, n := range names {
		pkg, ok := Binaries[n]
		if !ok {
			return fmt.Errorf("lab: unknown binary %q", n)
		}
		args = append(args, pkg)
	}
	fmt.Fprintf(progress, "lab: go build %s\n", strings.Join(names, " "))
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: go build: %w\n%s", err, out)
	}
	for _, n := range names {
		if err := os.Rename(filepath.Join(tmp, n), filepath.Join(root, binDir, n)); err != nil {
			return fmt.Errorf("lab: install %s: %w", n, err)
		}
	}
	return nil
}

// goTool is the go command that runs this process's toolchain when there is one, else the go on PATH.
func goTool() string {
	if goroot := os.Getenv("GOROOT"); goroot != "" {
		if p := filepath.Join(goroot, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// buildContext is the tar the shared Dockerfile needs for one binary: the Dockerfile, the rootfs
// skeleton and bin/linux-amd64/<name>, exactly what .dockerignore lets through for that image. Its
// hash names the image, so an unchanged binary never rebuilds.
func buildContext(root, name string) ([]byte, string, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	h := sha256.New()
	add := func(rel string, info fs.FileInfo) error {
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = hdr.ModTime.Truncate(0).UTC(), hdr.ModTime, hdr.ModTime
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if info.IsDir() {
			hdr.Name += "/"
			fmt.Fprintf(h, "dir %s\n", hdr.Name)
			return tw.WriteHeader(hdr)
		}
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "file %s %o %d\n", hdr.Name, info.Mode().Perm(), len(data))
		h.Write(data)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	}
	err := filepath.WalkDir(filepath.Join(root, rootfsDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		return add(rel, info)
	})
	if err != nil {
		return nil, "", err
	}
	for _, rel := range []string{dockerfile, filepath.Join(binDir, name)} {
		info, err := os.Stat(filepath.Join(root, rel))
		if err != nil {
			return nil, "", err
		}
		if err := add(rel, info); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), hex.EncodeToString(h.Sum(nil))[:16], nil
}

// BuildImage builds reslab/<name>:<content hash> from the shared FROM-scratch Dockerfile unless an
// image with that tag exists already, and returns the tag. Nothing is pulled.
func BuildImage(ctx context.Context, provider *testcontainers.DockerProvider, root, name string, progress io.Writer) (string, error) {
	tarball, hash, err := buildContext(root, name)
	if err != nil {
		return "", fmt.Errorf("lab: build context of %s: %w", name, err)
	}
	tag := imageRepo + name + ":" + hash
	if _, err := provider.Client().ImageInspect(ctx, tag); err == nil {
		fmt.Fprintf(progress, "lab: image %s (cached)\n", tag)
		return tag, nil
	}
	binary := name
	req := testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		ContextArchive: bytes.NewReader(tarball),
		Dockerfile:     dockerfile,
		Repo:           imageRepo + name,
		Tag:            hash,
		BuildArgs:      map[string]*string{"BINARY": &binary},
		KeepImage:      true,
		BuildOptionsModifier: func(o *client.ImageBuildOptions) {
			o.Labels = map[string]string{ManagedLabel: "true"}
		},
	}}
	if _, err := provider.BuildImage(ctx, &req); err != nil {
		return "", fmt.Errorf("lab: build image %s: %w", tag, err)
	}
	fmt.Fprintf(progress, "lab: image %s (built)\n", tag)
	return tag, nil
}
