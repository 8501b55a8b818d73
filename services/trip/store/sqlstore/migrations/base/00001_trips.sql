-- Portable base schema: runs unchanged on PostgreSQL 15 and CockroachDB.
-- UUID keys, TIMESTAMPTZ, no sequences, no advisory locks, no LISTEN/NOTIFY.

-- +goose Up
CREATE TABLE trips (
    id                 UUID        NOT NULL PRIMARY KEY,
    region             TEXT        NOT NULL,
    rider_id           TEXT        NOT NULL,
    driver_id          TEXT        NULL,
    state              TEXT        NOT NULL,
    product            TEXT        NOT NULL,
    pickup_lat         DOUBLE PRECISION NOT NULL,
    pickup_lng         DOUBLE PRECISION NOT NULL,
    dropoff_lat        DOUBLE PRECISION NOT NULL,
    dropoff_lng        DOUBLE PRECISION NOT NULL,
    quote_id           TEXT        NOT NULL,
    fare_currency      TEXT        NOT NULL,
    quoted_fare_minor  BIGINT      NOT NULL,
    final_fare_minor   BIGINT      NULL,
    cancelled_by       TEXT        NULL,
    end_reason         TEXT        NOT NULL DEFAULT '',
    version            BIGINT      NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    assigned_at        TIMESTAMPTZ NULL,
    arrived_at         TIMESTAMPTZ NULL,
    started_at         TIMESTAMPTZ NULL,
    completed_at       TIMESTAMPTZ NULL,
    ended_at           TIMESTAMPTZ NULL, -- cancelled_at, or when no driver was found
    rating             SMALLINT    NOT NULL DEFAULT 0, -- rider's stars 1..5, 0 = not rated
    rating_comment     TEXT        NOT NULL DEFAULT '',
    CONSTRAINT trips_state_valid CHECK (state IN ('REQUESTED', 'DRIVER_ASSIGNED', 'DRIVER_ARRIVED',
        'IN_PROGRESS', 'COMPLETED', 'CANCELLED', 'NO_DRIVER_FOUND')),
    CONSTRAINT trips_driver_when_active CHECK (
        state NOT IN ('DRIVER_ASSIGNED', 'DRIVER_ARRIVED', 'IN_PROGRESS') OR driver_id IS NOT NULL),
    CONSTRAINT trips_fare_nonnegative CHECK (quoted_fare_minor >= 0),
    CONSTRAINT trips_rating_range CHECK (rating BETWEEN 0 AND 5)
);

-- The invariant "no driver is ever on two active trips", enforced by the
-- database itself: a unique violation here is ErrDriverBusy.
CREATE UNIQUE INDEX trips_one_active_trip_per_driver ON trips (driver_id)
    WHERE state IN ('DRIVER_ASSIGNED', 'DRIVER_ARRIVED', 'IN_PROGRESS');

CREATE INDEX trips_created ON trips (created_at, id);
CREATE INDEX trips_rider_created ON trips (rider_id, created_at, id);
CREATE INDEX trips_driver_created ON trips (driver_id, created_at, id);
CREATE INDEX trips_state_updated ON trips (state, updated_at, id);

-- Append-only history. Each row carries the trip as it was right after the
-- event (trip_after), so watchers need no extra read.
CREATE TABLE trip_events (
    id          UUID        NOT NULL PRIMARY KEY,
    trip_id     UUID        NOT NULL REFERENCES trips (id),
    region      TEXT        NOT NULL,
    version     BIGINT      NOT NULL,
    event       TEXT        NOT NULL,
    from_state  TEXT        NULL,
    to_state    TEXT        NOT NULL,
    actor       TEXT        NOT NULL,
    actor_id    TEXT        NOT NULL DEFAULT '',
    reason      TEXT        NOT NULL DEFAULT '',
    driver_id   TEXT        NULL,
    at          TIMESTAMPTZ NOT NULL,
    trip_after  JSONB       NOT NULL,
    -- One event per trip version: two writers can never both append "the
    -- next" event, whatever the isolation level.
    CONSTRAINT trip_events_trip_version UNIQUE (trip_id, version)
);

CREATE INDEX trip_events_at ON trip_events (at, id);

-- Idempotency keys: the same (scope, key) returns the original result.
CREATE TABLE trip_idempotency_keys (
    scope        TEXT        NOT NULL,
    key          TEXT        NOT NULL,
    request_hash TEXT        NOT NULL,
    trip_id      UUID        NOT NULL REFERENCES trips (id),
    event_id     UUID        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT trip_idempotency_keys_pkey PRIMARY KEY (scope, key)
);

-- +goose Down
DROP TABLE trip_idempotency_keys;
DROP TABLE trip_events;
DROP TABLE trips;
