-- 0002: worker leases. A worker owns a saga until lease_until (epoch seconds);
-- an expired or missing lease lets another worker claim it.
ALTER TABLE sagakit_saga ADD COLUMN owner TEXT;

ALTER TABLE sagakit_saga ADD COLUMN lease_until REAL;

CREATE INDEX sagakit_saga_claim ON sagakit_saga (status, lease_until);
