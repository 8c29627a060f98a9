"""Writes the Parquet fixtures that `tests/import.rs` reads: one small prompt/response table written by
pyarrow, pandas, polars and DuckDB with each tool's default settings (snappy, or zstd for polars), and by
pyarrow once per codec the ecosystem writes (gzip, lz4, brotli, zstd, uncompressed).

Run from this directory: `python make_fixtures.py` (needs pyarrow, pandas, polars, duckdb from PyPI).
The files are committed; this script is how they were made, with the versions it prints."""

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

ROWS = {
    "prompt": ["What is the capital of France?", "Name a colour.", "Say hello in Spanish. ¿Sí?"],
    "response": [" The capital of France is Paris.", " Blue.", " Hola."],
}

pq.write_table(pa.table(ROWS), "pyarrow_default.parquet")
for codec in ["gzip", "lz4", "brotli", "zstd", "none"]:
    pq.write_table(pa.table(ROWS), f"pyarrow_{codec}.parquet", compression=codec)
pd.DataFrame(ROWS).to_parquet("pandas_default.parquet")
pl.DataFrame(ROWS).write_parquet("polars_default.parquet")
frame = pd.DataFrame(ROWS)  # DuckDB reads the local variable by name
duckdb.sql("COPY (SELECT * FROM frame) TO 'duckdb_default.parquet' (FORMAT parquet)")

for name in ["pyarrow_default", "pandas_default", "polars_default", "duckdb_default"]:
    meta = pq.ParquetFile(f"{name}.parquet").metadata
    print(name, meta.created_by, meta.row_group(0).column(0).compression)
print("pyarrow", pa.__version__, "pandas", pd.__version__, "polars", pl.__version__, "duckdb", duckdb.__version__)
