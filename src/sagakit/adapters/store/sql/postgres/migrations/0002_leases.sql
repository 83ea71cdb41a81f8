-- 0002: worker leases. A worker owns a saga until lease_until (epoch seconds
-- on the database clock); an expired or missing lease lets another claim it.
ALTER TABLE sagakit_saga
    ADD COLUMN owner text,
    ADD COLUMN lease_until double precision;

CREATE INDEX sagakit_saga_claim ON sagakit_saga (status, lease_until);
