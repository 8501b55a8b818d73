package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/trip"
)

// eventsCmd is `hexride events tail`: follow the trip event stream, one
// line per event, for operators and tools (billing, support).
func eventsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// `hexride events tail` is the one verb so far; the bare form is the same.
	if len(args) > 0 && args[0] == "tail" {
		args = args[1:]
	}
	fs := newFlagSet("events", summary("events"), stderr)
	url := fs.String("nats", "", "NATS server(s) of the trip event stream, nats://host:port[,…]; required")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	region := fs.String("region", "", "only this region's trips")
	tripID := fs.String("trip", "", "only this trip")
	from := fs.String("from", "new", "where to start when there is no position file: new, all, or a stream sequence")
	posFile := fs.String("position-file", "", "keep the last stream sequence written here and resume after it (at least once: a crash may repeat the last events; de-duplicate by event_id)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("events tail: --nats (or HEXRIDE_NATS) is required")
	}
	filter := trip.SubjectAll
	switch {
	case *tripID != "":
		r := "*"
		if *region != "" {
			r = *region
		}
		filter = trip.SubjectPrefix + "." + r + "." + *tripID
	case *region != "":
		filter = trip.SubjectPrefix + "." + *region + ".>"
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy}
	switch *from {
	case "new":
	case "all":
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	default:
		seq, err := strconv.ParseUint(*from, 10, 64)
		if err != nil || seq == 0 {
			return fmt.Errorf("events tail: --from %q: want new, all or a sequence ≥ 1", *from)
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq
	}
	if *posFile != "" {
		if raw, err := os.ReadFile(*posFile); err == nil {
			last, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
			if err != nil {
				return fmt.Errorf("events tail: position file %s: %w", *posFile, err)
			}
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last+1
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("events tail: %w", err)
		}
	}
	nc, err := nats.Connect(*url, nats.Name("hexride events tail"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		return fmt.Errorf("events tail: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("events tail: %w", err)
	}
	cons, err := js.OrderedConsumer(ctx, trip.StreamName, cfg)
	if err != nil {
		return fmt.Errorf("events tail: stream %s: %w", trip.StreamName, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("events tail: %w", err)
	}
	go func() { <-ctx.Done(); it.Stop() }()
	var (
		lastSeq   uint64
		savedSeq  uint64
		lastSaved = time.Now()
	)
	save := func() error {
		if *posFile == "" || lastSeq == savedSeq {
			return nil
		}
		tmp := *posFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(strconv.FormatUint(lastSeq, 10)+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Clean(*posFile)); err != nil {
			return err
		}
		savedSeq, lastSaved = lastSeq, time.Now()
		return nil
	}
	defer func() { _ = save() }()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("events tail: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("events tail: %w", err)
		}
		var ev tripv1.TripEvent
		if err := proto.Unmarshal(msg.Data(), &ev); err != nil {
			fmt.Fprintf(stderr, "events tail: seq %d on %s: undecodable: %v\n", meta.Sequence.Stream, msg.Subject(), err)
		} else if err := writeEvent(stdout, &ev, msg.Subject(), meta.Sequence.Stream, *asJSON); err != nil {
			return err
		}
		lastSeq = meta.Sequence.Stream
		if time.Since(lastSaved) > 200*time.Millisecond {
			if err := save(); err != nil {
				return fmt.Errorf("events tail: position file: %w", err)
			}
		}
	}
}

// eventLine is one line of `hexride events tail --json`.
type eventLine struct {
	Seq         uint64    `json:"seq"`
	Subject     string    `json:"subject"`
	EventID     string    `json:"event_id"`
	TripID      string    `json:"trip_id"`
	TripVersion int64     `json:"trip_version"`
	Region      string    `json:"region"`
	Type        string    `json:"type"`
	FromState   string    `json:"from_state"`
	ToState     string    `json:"to_state"`
	Actor       string    `json:"actor"`
	ActorID     string    `json:"actor_id,omitempty"`
	DriverID    string    `json:"driver_id,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	OccurredAt  time.Time `json:"occurred_at"`
	PublishedAt time.Time `json:"published_at"`
	ReceivedAt  time.Time `json:"received_at"`
}

func writeEvent(w io.Writer, m *tripv1.TripEvent, subject string, seq uint64, asJSON bool) error {
	e := m.GetEvent()
	line := eventLine{
		Seq: seq, Subject: subject, EventID: e.GetEventId(), TripID: e.GetTripId(), TripVersion: m.GetTripVersion(),
		Region: m.GetRegion(), Type: e.GetType().String(), FromState: e.GetFromState().String(), ToState: e.GetToState().String(),
		Actor: e.GetActor().String(), ActorID: e.GetActorId(), DriverID: e.GetDriverId(), Reason: e.GetReason(),
		OccurredAt: e.GetOccurredAt().AsTime(), PublishedAt: m.GetPublishedAt().AsTime(), ReceivedAt: time.Now().UTC(),
	}
	var out []byte
	if asJSON {
		b, err := json.Marshal(line)
		if err != nil {
			return err
		}
		out = append(b, '\n')
	} else {
		out = fmt.Appendf(nil, "%s #%d %s v%d %s %s→%s %s\n", line.OccurredAt.Format(time.RFC3339Nano), seq, line.TripID,
			line.TripVersion, strings.TrimPrefix(line.Type, "TRIP_EVENT_TYPE_"),
			strings.TrimPrefix(line.FromState, "TRIP_STATE_"), strings.TrimPrefix(line.ToState, "TRIP_STATE_"), line.Region)
	}
	// One write per line, so a killed tail never leaves half a line
	// followed by another.
	_, err := w.Write(out)
	return err
}
