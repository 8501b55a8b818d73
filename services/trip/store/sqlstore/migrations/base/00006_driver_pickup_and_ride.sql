-- Chained supply: a driver carrying a rider may be assigned its next trip.
-- The invariant "a driver is on at most one active trip" becomes "a driver
-- holds at most one trip in a pickup state (DRIVER_ASSIGNED, DRIVER_ARRIVED)
-- and at most one trip IN_PROGRESS", enforced by two partial unique indexes;
-- a unique violation of either is ErrDriverBusy. So the next trip can be
-- assigned (and the driver can arrive at it) while the ride is in progress,
-- but it cannot start until that ride has ended.
--
-- Re-runnable, like 00004 (runs on CockroachDB too, where schema changes
-- are not transactional): the new indexes are created under new names
-- before the old one is dropped, every statement can run again after a
-- partial failure, and the guarantee holds at every step (the old index is
-- the stricter one).

-- +goose NO TRANSACTION
-- +goose Up
CREATE UNIQUE INDEX IF NOT EXISTS trips_one_pickup_per_driver ON trips (driver_id)
    WHERE state IN ('DRIVER_ASSIGNED', 'DRIVER_ARRIVED');
CREATE UNIQUE INDEX IF NOT EXISTS trips_one_ride_per_driver ON trips (driver_id)
    WHERE state = 'IN_PROGRESS';
DROP INDEX IF EXISTS trips_one_active_trip_per_driver;

-- +goose Down
-- Fails while any driver holds both a pickup and a ride (chained trips):
-- finish or unassign those first.
CREATE UNIQUE INDEX IF NOT EXISTS trips_one_active_trip_per_driver ON trips (driver_id)
    WHERE state IN ('DRIVER_ASSIGNED', 'DRIVER_ARRIVED', 'IN_PROGRESS');
DROP INDEX IF EXISTS trips_one_ride_per_driver;
DROP INDEX IF EXISTS trips_one_pickup_per_driver;
