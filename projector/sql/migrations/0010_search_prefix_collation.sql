-- Param and tag filters find their rows through the first 200 characters of the value. Under
-- the database's collation a prefix LIKE ('abc%') is no index range, so it read every entry of
-- the key (100,000 for a key of a 100,000-run experiment); under "C" it is one. Equality and
-- LIKE give the same answers under any deterministic collation (the only kind a database
-- default can be), so the filters compare under "C" too (api/mlflow/search_sql.py), and no
-- result changes. Nothing orders by these indexes.
DROP INDEX params_search;
DROP INDEX run_tags_search;
CREATE INDEX params_search
    ON params (experiment_id, key, (left(value, 200) COLLATE "C")) INCLUDE (run_id);
CREATE INDEX run_tags_search
    ON run_tags (experiment_id, key, (left(value, 200) COLLATE "C")) INCLUDE (run_id);
