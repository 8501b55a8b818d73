package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// errHelp reports that a subcommand printed its usage because --help (or
// -h) asked for it: run treats it as success.
var errHelp = errors.New("help requested")

// newFlagSet returns a subcommand's flag set writing to stderr, whose
// usage names the command, says what it does and lists every flag with the
// environment variable that also sets it.
func newFlagSet(name, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: hexride %s [flags]\n\n%s\n", name, summary)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n == 0 {
			return
		}
		fmt.Fprintf(stderr, "\nflags (each also read from the environment variable shown; a flag given on the command line wins):\n")
		printFlags(stderr, fs)
	}
	return fs
}

// parseFlags parses args into fs: errHelp for --help, errUsage (after the
// flag package has printed what is wrong and the usage) for a bad flag.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		return errHelp
	default:
		return errUsage
	}
}

// envName is the environment variable applyEnv reads for a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// printFlags is flag.PrintDefaults with each flag's environment variable.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		var b strings.Builder
		fmt.Fprintf(&b, "  --%s", f.Name)
		if typ != "" {
			fmt.Fprintf(&b, " %s", typ)
		}
		b.WriteString("\n    \t")
		b.WriteString(strings.ReplaceAll(usage, "\n", "\n    \t"))
		switch f.DefValue {
		case "", "0", "0s", "false", "[]":
		default:
			if typ == "string" {
				fmt.Fprintf(&b, " (default %q)", f.DefValue)
			} else {
				fmt.Fprintf(&b, " (default %v)", f.DefValue)
			}
		}
		fmt.Fprintf(&b, " (env %s)\n", envName(f.Name))
		io.WriteString(w, b.String())
	})
}
