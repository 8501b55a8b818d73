package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hexride/hexride/roads"
)

// roadsCmd groups the road-network tools: `hexride roads build`.
func roadsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		// The one subcommand's flags are the group's help.
		fs, _ := roadsBuildFlags(stderr)
		fs.Usage()
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	switch args[0] {
	case "build":
		return roadsBuildCmd(ctx, args[1:], stdout, stderr)
	default:
		return fmt.Errorf("roads: unknown subcommand %q (want build)", args[0])
	}
}

type roadsBuildFlagValues struct{ osm, out, bbox, speeds *string }

// roadsBuildFlags is `hexride roads build`'s flag set.
func roadsBuildFlags(stderr io.Writer) (*flag.FlagSet, roadsBuildFlagValues) {
	fs := newFlagSet("roads build", "Build a road graph file from an OpenStreetMap extract (.osm.pbf): drivable ways, one-way streets, contraction hierarchies.", stderr)
	return fs, roadsBuildFlagValues{
		osm:    fs.String("osm", "", "OpenStreetMap extract to read (.osm.pbf)"),
		out:    fs.String("out", "", "road graph file to write (e.g. city.roads)"),
		bbox:   fs.String("bbox", "", "keep only roads inside minLat,minLng,maxLat,maxLng (degrees)"),
		speeds: fs.String("speeds", "", "override speeds, class=km/h,… (e.g. residential=30,service=10; a class set to 0 is dropped)"),
	}
}

// roadsBuildCmd imports an OpenStreetMap PBF extract into a contracted road
// graph file. Progress goes to stderr; the summary line to stdout.
func roadsBuildCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, v := roadsBuildFlags(stderr)
	osmPath, out, bboxFlag, speedsFlag := v.osm, v.out, v.bbox, v.speeds
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("roads build: unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		return err
	}
	if *osmPath == "" {
		return errors.New("roads build: --osm is required (an .osm.pbf extract)")
	}
	if *out == "" {
		return errors.New("roads build: --out is required (the road graph file to write)")
	}
	if fi, err := os.Stat(filepath.Dir(*out)); err != nil || !fi.IsDir() {
		return fmt.Errorf("roads build: --out %s: directory %s does not exist", *out, filepath.Dir(*out))
	}
	opts := roads.BuildOptions{Source: filepath.Base(*osmPath)}
	if *bboxFlag != "" {
		b, err := parseBBox(*bboxFlag)
		if err != nil {
			return fmt.Errorf("roads build: --bbox: %w", err)
		}
		opts.BBox = &b
	}
	if *speedsFlag != "" {
		s, err := parseSpeeds(*speedsFlag)
		if err != nil {
			return fmt.Errorf("roads build: --speeds: %w", err)
		}
		opts.Speeds = s
	}
	f, err := os.Open(*osmPath)
	if err != nil {
		return fmt.Errorf("roads build: --osm: %w", err)
	}
	defer f.Close()
	start := time.Now()
	opts.Progress = func(msg string) {
		fmt.Fprintf(stderr, "roads build: %6.1fs %s\n", time.Since(start).Seconds(), msg)
	}
	g, st, err := roads.Build(ctx, f, opts)
	if err != nil {
		if errors.Is(err, roads.ErrBadPBF) {
			return fmt.Errorf("roads build: --osm %s: %w", *osmPath, err)
		}
		return fmt.Errorf("roads build: %w", err)
	}
	if err := g.WriteFile(*out); err != nil {
		return fmt.Errorf("roads build: --out: %w", err)
	}
	fi, err := os.Stat(*out)
	if err != nil {
		return fmt.Errorf("roads build: --out: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "wrote %s: %d nodes, %d segments, %d shortcuts, %d bytes in %v\n",
		*out, g.Nodes(), g.Segments(), st.Shortcuts, fi.Size(), time.Since(start).Round(time.Millisecond))
	return err
}

// parseBBox parses minLat,minLng,maxLat,maxLng.
func parseBBox(s string) (roads.BBox, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 4 {
		return roads.BBox{}, fmt.Errorf("want minLat,minLng,maxLat,maxLng, got %q", s)
	}
	var v [4]float64
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return roads.BBox{}, fmt.Errorf("want minLat,minLng,maxLat,maxLng, got %q", s)
		}
		v[i] = f
	}
	b := roads.BBox{MinLat: v[0], MinLng: v[1], MaxLat: v[2], MaxLng: v[3]}
	return b, b.Validate()
}

// parseSpeeds applies class=kmh overrides to the default speeds; 0 drops
// a class.
func parseSpeeds(s string) (roads.Speeds, error) {
	speeds := roads.DefaultSpeeds()
	for _, kv := range strings.Split(s, ",") {
		class, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || class == "" {
			return nil, fmt.Errorf("want class=km/h, got %q", kv)
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a number", class, val)
		}
		if v == 0 {
			delete(speeds, class)
			continue
		}
		speeds[class] = v
	}
	return speeds, speeds.Validate()
}
