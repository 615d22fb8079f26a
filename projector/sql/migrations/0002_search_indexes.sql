-- Indexes for MLflow search (api/search_sql.py; measurements in docs/search.md).

-- Runs of one experiment and stage in MLflow's default order (start_time DESC, run_id): a
-- top-N search without an order_by walks this index and stops early.
CREATE INDEX runs_search ON runs (experiment_id, lifecycle_stage, start_time DESC, run_id);

-- Param and tag filters: "runs whose key k has value v". MLflow allows values of 6,000 (params)
-- and 8,000 (tags) characters, more than a btree entry may hold (2,704 bytes), so the index
-- keeps a prefix; equality filters test the prefix first (search_sql.INDEXED_PREFIX).
-- 0001's params (key, value) index refused such values outright; this one replaces it.
DROP INDEX IF EXISTS params_key_value;
CREATE INDEX params_search ON params (key, left(value, 200)) INCLUDE (run_id);
CREATE INDEX run_tags_search ON run_tags (key, left(value, 200)) INCLUDE (run_id);

-- Metric filters and order_by on the latest value: (key, latest_value) from 0001, with the run
-- id so that the filter is answered from the index.
DROP INDEX IF EXISTS metric_series_key_value;
CREATE INDEX metric_series_search ON metric_series (key, latest_value) INCLUDE (run_id);

-- Experiment search orders by creation time by default.
CREATE INDEX experiments_creation ON experiments (creation_time DESC, experiment_id);
