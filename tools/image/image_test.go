package main

import (
	"archive/tar"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestImage builds the image the way an operator does (make image), then
// unpacks the OCI layout by hand, as a runtime would, and checks it: a
// static /hexride that runs, no shell, a numeric non-root user, passwd.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a static hexride (minutes when not cached)")
	}
	staticLinkingWorks(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	layoutDir := filepath.Join(tmp, "oci")
	cmd := exec.Command("make", "-s", "-C", root, "image",
		"STATIC_BIN="+filepath.Join(tmp, "hexride-static"), "IMAGE_LAYOUT="+layoutDir,
		"IMAGE_TAR="+filepath.Join(tmp, "image.tar"), "IMAGE_REF=hexride:test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}

	var index struct {
		Manifests []struct{ Digest string }
	}
	readJSON(t, filepath.Join(layoutDir, "index.json"), &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("index lists %d manifests, want 1", len(index.Manifests))
	}
	var manifest struct {
		Config struct{ Digest string }
		Layers []struct{ MediaType, Digest string }
	}
	readJSON(t, blob(layoutDir, index.Manifests[0].Digest), &manifest)
	var config struct {
		OS, Architecture string
		Config           struct {
			User       string
			Entrypoint []string
		}
	}
	readJSON(t, blob(layoutDir, manifest.Config.Digest), &config)
	if config.OS != "linux" || len(config.Config.Entrypoint) != 1 || config.Config.Entrypoint[0] != "/hexride" {
		t.Errorf("config: os %q entrypoint %q, want linux and [/hexride]", config.OS, config.Config.Entrypoint)
	}
	user, _, _ := strings.Cut(config.Config.User, ":")
	if user == "" || user == "0" || user == "root" || strings.Trim(user, "0123456789") != "" {
		t.Errorf("config user %q: want a numeric non-root uid (Kubernetes runAsNonRoot checks numbers)", config.Config.User)
	}

	rootfs := filepath.Join(tmp, "rootfs")
	for _, l := range manifest.Layers {
		unpackLayer(t, blob(layoutDir, l.Digest), l.MediaType, rootfs)
	}
	for _, shell := range []string{"bin/sh", "bin/bash", "bin/busybox", "usr/bin/sh"} {
		if _, err := os.Lstat(filepath.Join(rootfs, shell)); err == nil {
			t.Errorf("image has /%s", shell)
		}
	}
	passwd, err := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
	if err != nil || !strings.Contains(string(passwd), ":"+user+":") {
		t.Errorf("/etc/passwd has no entry for uid %s: %v\n%s", user, err, passwd)
	}
	bin := filepath.Join(rootfs, "hexride")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("/hexride asks for a dynamic loader: not static")
		}
	}
	f.Close()
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "hexride ") {
		t.Fatalf("unpacked /hexride version: %v\n%s", err, out)
	}
	t.Logf("unpacked /hexride version:\n%s", out)
}

// staticLinkingWorks skips the test, saying why, when gcc cannot link a
// static C program here (no libc.a): the image needs it for H3.
func staticLinkingWorks(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc is not installed: H3 needs cgo, so no static hexride can be built")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "a.c")
	if err := os.WriteFile(src, []byte("int main(void){return 0;}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-static", "-o", filepath.Join(dir, "a"), src).CombinedOutput(); err != nil {
		t.Skipf("gcc cannot link statically here (install libc6-dev's libc.a): %v\n%s", err, out)
	}
}

func blob(layoutDir, digest string) string {
	alg, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(layoutDir, "blobs", alg, hex)
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// unpackLayer extracts a (gzipped) tar layer under dir, refusing paths
// that leave it.
func unpackLayer(t *testing.T, path, mediaType, dir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(mediaType, "gzip") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, h.Name)
		if !strings.HasPrefix(target, dir+string(filepath.Separator)) {
			t.Fatalf("layer entry %q leaves the root", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			if err = os.MkdirAll(filepath.Dir(target), 0o755); err == nil {
				err = writeFile(target, tr, os.FileMode(h.Mode).Perm())
			}
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, target)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(path string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
