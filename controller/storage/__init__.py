"""Storage: the only code that talks to Redis (``store`` and its Lua scripts, key names,
batching, connecting, the embedded server) and to the files under the data directory
(private files, key files, the DuckDB/Parquet archive engine). Library errors are mapped
to ours here. Depends on ``domain``, ``config`` and nothing above."""
