-- A random identity per warehouse. Cache entries that vouch for warehouse contents (the set of
-- songs whose lyrics are stored) are keyed by it, so a Redis shared by several warehouses, or
-- one that outlives a rebuilt warehouse, can never answer for the wrong one.
CREATE TABLE warehouse_identity (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    identity    uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO warehouse_identity DEFAULT VALUES;
