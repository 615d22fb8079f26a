-- The run's experiment on params, run_tags and metric_series, so that a search filter or
-- order_by reads only the searched experiment's entries (docs/search.md, "Indexes").
--
-- A run never changes experiment, so the column is written once, when the row is created, and
-- never updated. The projector writes it from the runs row (projector/queries.py: one
-- INSERT ... SELECT per table joining runs); a run's events travel on its shard after its
-- RunCreated, so the run row is always there. lifecycle_stage stays on runs only: deleting or
-- restoring a run or experiment would otherwise rewrite every param, tag and series row, and
-- the search joins runs anyway (tie-breaks on start_time; EXPLAIN ANALYZE in docs/search.md).

ALTER TABLE params ADD COLUMN experiment_id bigint;
ALTER TABLE run_tags ADD COLUMN experiment_id bigint;
ALTER TABLE metric_series ADD COLUMN experiment_id bigint;

UPDATE params p SET experiment_id = r.experiment_id FROM runs r WHERE r.run_id = p.run_id;
UPDATE run_tags t SET experiment_id = r.experiment_id FROM runs r WHERE r.run_id = t.run_id;
UPDATE metric_series s SET experiment_id = r.experiment_id FROM runs r WHERE r.run_id = s.run_id;

-- Rows of runs that do not exist cannot be reached by any run read or search; only writers
-- that bypass ingest (which refuses unknown run ids) leave them. They have no experiment.
DO $$
DECLARE
    orphans bigint;
BEGIN
    DELETE FROM metric_chunks c USING metric_series s
        WHERE s.series_id = c.series_id AND s.experiment_id IS NULL;
    DELETE FROM metric_series WHERE experiment_id IS NULL;
    GET DIAGNOSTICS orphans = ROW_COUNT;
    IF orphans > 0 THEN
        RAISE NOTICE 'deleted % metric series of runs that do not exist', orphans;
    END IF;
    DELETE FROM params WHERE experiment_id IS NULL;
    DELETE FROM run_tags WHERE experiment_id IS NULL;
END
$$;

ALTER TABLE params ALTER COLUMN experiment_id SET NOT NULL;
ALTER TABLE run_tags ALTER COLUMN experiment_id SET NOT NULL;
ALTER TABLE metric_series ALTER COLUMN experiment_id SET NOT NULL;

-- Writers other than the projector (tools, test fixtures) may leave the column out: fill it
-- from the run, as a default that PostgreSQL cannot express. The projector passes the value,
-- so the WHEN clause keeps the trigger from firing on its rows.
CREATE FUNCTION run_experiment_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT r.experiment_id INTO NEW.experiment_id FROM runs r WHERE r.run_id = NEW.run_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER params_experiment_id BEFORE INSERT ON params
    FOR EACH ROW WHEN (NEW.experiment_id IS NULL) EXECUTE FUNCTION run_experiment_id();
CREATE TRIGGER run_tags_experiment_id BEFORE INSERT ON run_tags
    FOR EACH ROW WHEN (NEW.experiment_id IS NULL) EXECUTE FUNCTION run_experiment_id();
CREATE TRIGGER metric_series_experiment_id BEFORE INSERT ON metric_series
    FOR EACH ROW WHEN (NEW.experiment_id IS NULL) EXECUTE FUNCTION run_experiment_id();

-- 0002's search indexes, led by the experiment. Filters on one experiment read only its
-- entries; a metric order_by walks (experiment_id, key, latest_value) in order and stops
-- after a page. Probes for one run use the (run_id, key) primary/unique keys.
DROP INDEX params_search;
DROP INDEX run_tags_search;
DROP INDEX metric_series_search;
CREATE INDEX params_search ON params (experiment_id, key, left(value, 200)) INCLUDE (run_id);
CREATE INDEX run_tags_search ON run_tags (experiment_id, key, left(value, 200)) INCLUDE (run_id);
CREATE INDEX metric_series_search
    ON metric_series (experiment_id, key, latest_value) INCLUDE (run_id);
