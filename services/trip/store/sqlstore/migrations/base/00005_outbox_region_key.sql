-- The outbox keyed like the rest of a trip's rows: (region, event_id), so
-- on CockroachDB (outbox homed by region, cockroach migration 4) recording
-- an event in the outbox needs no uniqueness check in other regions. The
-- relay deletes by (region, event_id).
--
-- Re-runnable, like 00004.

-- +goose NO TRANSACTION
-- +goose Up
ALTER TABLE trip_event_outbox
    DROP CONSTRAINT trip_event_outbox_pkey,
    ADD CONSTRAINT trip_event_outbox_pkey PRIMARY KEY (region, event_id);

-- +goose Down
ALTER TABLE trip_event_outbox
    DROP CONSTRAINT trip_event_outbox_pkey,
    ADD CONSTRAINT trip_event_outbox_pkey PRIMARY KEY (event_id);
