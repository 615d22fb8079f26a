-- Where each chunk's smallest and largest value are: position in the chunk (0-based, first
-- occurrence in logged order), step and timestamp. A downsampled history read (api/downsample.py)
-- lets a chunk that lies inside one bucket contribute these two points without unpacking it.
-- NULL when every value of the chunk is NaN, and for chunks written before this migration
-- (the reader unpacks those; compaction rewrites them with extrema).
ALTER TABLE metric_chunks
    ADD COLUMN min_value_pos  integer,
    ADD COLUMN max_value_pos  integer,
    ADD COLUMN min_value_step bigint,
    ADD COLUMN max_value_step bigint,
    ADD COLUMN min_value_ts   bigint,
    ADD COLUMN max_value_ts   bigint;

-- Compaction (projector/compaction.py) looks for runs of small chunks; this index holds only
-- them, so finding candidates costs in proportion to the small chunks, not to all points.
CREATE INDEX metric_chunks_small ON metric_chunks (series_id, chunk_no) WHERE n < 512;
