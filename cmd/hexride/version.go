package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// vcsRevision and vcsModified are a fallback for builds Go cannot stamp
// with VCS information (a git worktree, whose .git is a file: golang/go#58218):
// make build sets them with -ldflags "-X main.vcsRevision=… -X
// main.vcsModified=true|false". What the go command recorded wins.
var vcsRevision, vcsModified string

// buildInfo is what hexride version reports.
type buildInfo struct {
	Version   string // -ldflags main.version, else the module version
	Module    string // module path@version ("(devel)" for a build from a checkout)
	Revision  string // VCS revision, "" when not built from a VCS checkout
	Time      string // commit time of Revision
	Modified  bool   // the checkout had uncommitted changes
	GoVersion string
}

// readBuildInfo reads what the linker and the go command recorded.
func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, GoVersion: runtime.Version()}
	if vcsRevision != "" {
		b.Revision, b.Modified = vcsRevision, vcsModified == "true"
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Module = info.Main.Path + "@" + info.Main.Version
	if b.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		b.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision, b.Time = s.Value, ""
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

func (b buildInfo) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "hexride %s\n", b.Version)
	if b.Module != "" {
		fmt.Fprintf(&s, "module   %s\n", b.Module)
	}
	if b.Revision != "" {
		fmt.Fprintf(&s, "revision %s\n", b.Revision)
		if b.Time != "" {
			fmt.Fprintf(&s, "time     %s\n", b.Time)
		}
		fmt.Fprintf(&s, "modified %t\n", b.Modified)
	} else {
		s.WriteString("revision unknown (not built from a VCS checkout)\n")
	}
	fmt.Fprintf(&s, "go       %s\n", b.GoVersion)
	return s.String()
}

func versionCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", summary("version"), stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "version: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	_, err := io.WriteString(stdout, readBuildInfo().String())
	return err
}
