// Command image packs a statically linked hexride binary into an OCI image
// without a container engine: one layer holding /hexride, a minimal
// /etc/passwd and /etc/group, and the build host's CA certificates; no
// shell; the non-root user 65532 (nonroot); entrypoint /hexride. It writes
// an OCI image layout directory (--layout) and, with --tar, a tarball that
// `docker load` and `podman load` accept.
//
//	go run . --binary ../../bin/hexride-static --layout ../../bin/hexride-oci --tar ../../bin/hexride-image.tar
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// UID and GID the image runs as (distroless's "nonroot").
const uid = 65532

// caBundles are where Debian, Alpine and Fedora keep the CA bundle; the
// first found is copied to Go's first choice, /etc/ssl/certs/ca-certificates.crt.
var caBundles = []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"}

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	binary := fs.String("binary", "", "statically linked hexride binary (required)")
	out := fs.String("layout", "", "OCI image layout directory to write (replaced; required)")
	tarPath := fs.String("tar", "", "also write a docker/podman-loadable tarball here")
	ref := fs.String("ref", "hexride:dev", "image reference recorded in the layout and tarball")
	revision := fs.String("revision", "", "org.opencontainers.image.revision label")
	arch := fs.String("arch", "amd64", "the binary's architecture")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *binary == "" || *out == "" {
		fs.Usage()
		return errors.New("--binary and --layout are required")
	}
	bin, err := os.ReadFile(*binary)
	if err != nil {
		return err
	}
	img, err := build(bin, *arch, *revision, *ref)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(*out); err != nil {
		return err
	}
	p, err := layout.Write(*out, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": *ref})); err != nil {
		return err
	}
	if *tarPath != "" {
		tag, err := name.NewTag(*ref)
		if err != nil {
			return err
		}
		if err := tarball.WriteToFile(*tarPath, tag, img); err != nil {
			return err
		}
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "image %s %s written to %s\n", *ref, d, *out)
	return nil
}

// epoch stamps every file and the config, so the same binary gives the
// same image digest.
var epoch = time.Unix(0, 0).UTC()

// build returns the image around bin.
func build(bin []byte, arch, revision, ref string) (v1.Image, error) {
	files, err := rootFS(bin)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(files)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{CreatedBy: "hexride tools/image", Created: v1.Time{Time: epoch}}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", arch, v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{"/hexride"}
	cf.Config.Cmd = []string{"serve"}
	cf.Config.User = strconv.Itoa(uid) + ":" + strconv.Itoa(uid)
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":  "hexride",
		"org.opencontainers.image.source": "https://github.com/hexride/hexride",
		"org.opencontainers.image.ref":    ref,
	}
	if revision != "" {
		cf.Config.Labels["org.opencontainers.image.revision"] = revision
	}
	return mutate.ConfigFile(img, cf)
}

// rootFS is the layer's tar: directories, /hexride, passwd and group, CA
// certificates, and an empty /tmp owned by the user.
func rootFS(bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(path string, mode int64, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: path, Mode: mode, Uid: owner, Gid: owner, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(path string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, uid)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", uid)
	steps := []func() error{
		func() error { return dir("etc/", 0o755, 0) },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return dir("etc/ssl/", 0o755, 0) },
		func() error { return dir("etc/ssl/certs/", 0o755, 0) },
		func() error { return dir("home/", 0o755, 0) },
		func() error { return dir("home/nonroot/", 0o700, uid) },
		func() error { return dir("tmp/", 0o1777, 0) },
		func() error { return file("hexride", 0o755, bin) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	for _, path := range caBundles {
		if certs, err := os.ReadFile(path); err == nil {
			if err := file("etc/ssl/certs/ca-certificates.crt", 0o644, certs); err != nil {
				return nil, err
			}
			break
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
