-- lz4 rather than pglz for the packed point columns and the event payloads. Filling a tail
-- chunk rewrites its bytea values (TOAST decompresses and compresses them again), and pglz
-- spends most of that time failing to compress float bits: measured on 2 cores, small
-- appends to 1,000 tail chunks ran at ~14,000 points/s with pglz and ~80,000 with lz4, and
-- the projector on 20-point entries went from ~150,000 to ~280,000 points/s.
-- PostgreSQL built without lz4 keeps pglz (still correct, slower).
DO $$
BEGIN
    ALTER TABLE metric_chunks
        ALTER COLUMN steps SET COMPRESSION lz4,
        ALTER COLUMN timestamps SET COMPRESSION lz4,
        ALTER COLUMN vals SET COMPRESSION lz4;
    ALTER TABLE event_log ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 compression is not available; metric chunks keep pglz';
END
$$;
