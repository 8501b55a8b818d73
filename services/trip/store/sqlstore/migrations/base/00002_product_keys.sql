-- One spelling of a product everywhere: its key ("standard"), as the supply
-- index and the price tables spell it. Rows written before this migration
-- carry the upper-case enum name; event snapshots keep theirs (readers
-- accept both).

-- +goose Up
UPDATE trips SET product = lower(product) WHERE product <> lower(product);

-- +goose Down
UPDATE trips SET product = upper(product) WHERE product <> upper(product);
