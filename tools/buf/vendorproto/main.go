// Command vendorproto writes buf/validate/validate.proto from the descriptor
// compiled into the protovalidate Go module, because buf's remote registry is
// unreachable from our build machines and the .proto source is not shipped in
// the Go module.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"github.com/jhump/protoreflect/desc"
	"github.com/jhump/protoreflect/desc/protoprint"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vendorproto:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 2 {
		return fmt.Errorf("usage: vendorproto OUTDIR")
	}
	fd, err := desc.WrapFile(validate.File_buf_validate_validate_proto)
	if err != nil {
		return err
	}
	out := filepath.Join(os.Args[1], fd.GetName())
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	printer := protoprint.Printer{}
	if err := printer.PrintProtoFile(fd, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
