"""Writing per-request records (and the time series) to Parquet or DuckDB."""

from __future__ import annotations

from pathlib import Path

from fleetplan.errors import UsageError
from fleetplan.sim.metrics import SimResult

__all__ = ["check_output", "write_result"]


def _duckdb_error(p: Path, e: Exception) -> UsageError:
    return UsageError(f"{p} cannot be written as a DuckDB database ({e}); give a new path or "
                      "an existing DuckDB file", where="--out")


def check_output(path: str | Path) -> None:
    """Refuse, before any work, an existing `.duckdb`/`.db` file that DuckDB cannot open."""
    p = Path(path)
    if p.suffix.lower() in (".duckdb", ".db") and p.is_file():
        import duckdb

        try:
            duckdb.connect(str(p)).close()
        except duckdb.Error as e:
            raise _duckdb_error(p, e) from None


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

        try:
            con = duckdb.connect(str(p))
        except duckdb.Error as e:
            raise _duckdb_error(p, e) from None
        try:
            for name, df in (("requests", res.requests), ("timeseries", res.timeseries)):
                con.register("_df", df.to_arrow())
                con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _df")
                con.unregister("_df")
        finally:
            con.close()
        return p
    raise UsageError(f"unknown output format '{p.suffix}'; use .parquet or .duckdb", where="--out")
