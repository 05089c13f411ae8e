"""Catalog lookups by name."""

from __future__ import annotations

import pytest

from fleetplan.errors import UsageError


def test_lookups_follow_a_table_changed_in_place() -> None:
    """Lookups go through an index of normalized names per table; a table changed in place
    (an entry replaced, one removed, one added) is re-indexed, not answered from the old one."""
    from fleetplan.catalog.loader import find, load_catalog

    t = dict(load_catalog().gpus)
    assert find("gpu", "H100 SXM", t).name == "h100-sxm"
    t["h100-sxm"] = t["h100-sxm"].model_copy(update={"name": "h100-custom", "aliases": []})
    assert find("gpu", "h100-custom", t).name == "h100-custom"
    with pytest.raises(UsageError):  # the old entry's names are gone with it
        find("gpu", "H100 SXM", t)
    del t["l4"]
    with pytest.raises(UsageError):
        find("gpu", "l4", t)
    t["x1"] = t["b200"].model_copy(update={"name": "x1", "aliases": []})
    assert find("gpu", "x1", t).name == "x1"
