-- The event outbox: one row per trip event not yet relayed to the event
-- stream (NATS JetStream), written in the change's own transaction when the
-- store's outbox is on (hexride serve --nats), deleted by the relay once the
-- stream acknowledged the event. The relay lease names the one instance that
-- relays at a time (CockroachDB has no advisory locks).

-- +goose Up
CREATE TABLE trip_event_outbox (
    event_id  UUID        NOT NULL PRIMARY KEY, -- a trip_events id (no FK: a cross-region check on CockroachDB)
    trip_id   UUID        NOT NULL,
    region    TEXT        NOT NULL,
    version   BIGINT      NOT NULL,
    at        TIMESTAMPTZ NOT NULL
);

CREATE INDEX trip_event_outbox_at ON trip_event_outbox (at, event_id);

CREATE TABLE trip_relay_lease (
    name        TEXT        NOT NULL PRIMARY KEY,
    holder      TEXT        NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE trip_relay_lease;
DROP TABLE trip_event_outbox;
