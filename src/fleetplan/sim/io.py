"""Writing per-request records (and the time series) to Parquet or DuckDB."""

from __future__ import annotations

from pathlib import Path

from fleetplan.errors import UsageError
from fleetplan.sim.metrics import SimResult

__all__ = ["write_result"]


def write_result(res: SimResult, path: str | Path) -> Path:
    """`.parquet`: the requests table (time series beside it as `<stem>.timeseries.parquet`);
    `.duckdb`/`.db`: tables `requests` and `timeseries` in one database file."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        res.requests.write_parquet(p)
        res.timeseries.write_parquet(p.with_name(p.stem + ".timeseries.parquet"))
        return p
    if suffix in (".duckdb", ".db"):
        import duckdb

        con = duckdb.connect(str(p))
        try:
            for name, df in (("requests", res.requests), ("timeseries", res.timeseries)):
                con.register("_df", df.to_arrow())
                con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _df")
                con.unregister("_df")
        finally:
            con.close()
        return p
    raise UsageError(f"unknown output format '{p.suffix}'; use .parquet or .duckdb", where="--out")
