// Command hexride is the one hexride binary: it runs any subset of the
// services (serve), the whole platform in one process (dev), database
// migrations (migrate), the city simulator (sim) and development tooling.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…"; without
// it, hexride version reports the module version Go recorded (see
// version.go).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "hexride:", err)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"bench", "measure hexride beside Redis over real sockets: server CPU per operation (--quick, --json)", benchCmd},
		{"dev", "run the whole platform in one process, no external services (plaintext gRPC for loopback; JWT auth enforced with a local development key)", devCmd},
		{"events", "follow the trip event stream: events tail --nats URL [--json] [--region R] [--trip ID] [--from new|all|SEQ] [--position-file F]", eventsCmd},
		{"migrate", "apply the trip store's database migrations (--db DSN)", migrateCmd},
		{"roads", "build a road graph from an OpenStreetMap extract (roads build --osm f.osm.pbf --out f.roads)", roadsCmd},
		{"serve", "run any subset of the services (--services rider,driver,matching,trip)", serveCmd},
		{"sim", "drive a deployment with simulated driver and rider apps", simCmd},
		{"token", "mint a development token from the key hexride dev created (--role rider|driver|dispatcher --sub ID)", tokenCmd},
		{"version", "print the version, the module version and the VCS revision it was built from", versionCmd},
	}
}

// summary is a command's one-line description (its usage's second line).
func summary(name string) string {
	for _, c := range commands() {
		if c.name == name {
			return c.summary
		}
	}
	return ""
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printUsage(stderr)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], stdout, stderr)
			if errors.Is(err, errHelp) {
				return nil // --help: the usage was asked for
			}
			return err
		}
	}
	printUsage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: hexride <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nhexride <command> --help lists the command's flags; every flag can also be set as HEXRIDE_<FLAG>.")
}
