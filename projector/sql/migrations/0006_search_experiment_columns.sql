-- The run's experiment on params, run_tags and metric_series, so that a search filter or
-- order_by reads only the searched experiment's entries (docs/search.md, "Indexes").
--
-- A run never changes experiment, so the column never changes once known. The projector
-- writes it from the runs row (projector/queries.py: one INSERT ... SELECT per table joining
-- runs), and when it inserts a run it fills the column of that run's rows written before
-- (BACKFILL_RUN_EXPERIMENT): a run's events follow its RunCreated on its shard, but rows of a
-- run the projector has not seen yet are accepted, as they always were (entries of one run
-- on two shards after a change of the shard count; tools). So the column is NULL exactly
-- when the run is not in runs, whatever order the entries were applied in: live and replay
-- end equal, and search, which joins runs, sees every row of every run.
--
-- lifecycle_stage stays on runs only: deleting or restoring a run or an experiment would
-- otherwise rewrite every param, tag and series row of it, and the search reads runs anyway
-- (lifecycle and the start_time tie-break; EXPLAIN ANALYZE in docs/search.md).

ALTER TABLE params ADD COLUMN experiment_id bigint;
ALTER TABLE run_tags ADD COLUMN experiment_id bigint;
ALTER TABLE metric_series ADD COLUMN experiment_id bigint;

UPDATE params p SET experiment_id = r.experiment_id FROM runs r WHERE r.run_id = p.run_id;
UPDATE run_tags t SET experiment_id = r.experiment_id FROM runs r WHERE r.run_id = t.run_id;
UPDATE metric_series s SET experiment_id = r.experiment_id FROM runs r WHERE r.run_id = s.run_id;

-- Writers other than the projector (tools, test fixtures) may leave the column out: fill it
-- from the run, as a default that PostgreSQL cannot express. The projector passes the value
-- (NULL only for a run it has not seen), so the WHEN clause keeps the trigger off its rows.
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
