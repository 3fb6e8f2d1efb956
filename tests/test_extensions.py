"""Every extension field of a published item or collection has its extension declared, and clouds2mask:*
fields follow the JSON schema the package ships: the checks schema validation alone cannot make."""

from __future__ import annotations

import copy
import fnmatch
import json
import tomllib
from pathlib import Path

import pytest
import stac_fields
from conftest import item_dict
from stac_schemas import validate_stac as schema_only

from stac_clouds2mask import RunConfig, run

ROOT = Path(__file__).resolve().parent.parent
E = "s2b-t32upc-20200406-l1c-n0209-10x10"


@pytest.fixture
def published(sample_data_dir, tmp_path) -> dict[str, dict]:
    """Crop E published with probabilities (every asset kind): item, collection and root catalog by type."""
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": [item_dict(sample_data_dir, E)]}))
    out = tmp_path / "out"
    report = run(str(fc), RunConfig(output=str(out), device="cpu", resolution=60, probabilities=True))
    assert [o.status for o in report.outcomes] == ["published"]
    docs = [json.loads(p.read_text()) for p in out.rglob("*.json") if ".clouds2mask-runs" not in p.parts]
    return {d["type"]: d for d in docs}


def test_published_documents_declare_every_extension_they_use(published, validate_stac):
    assert sorted(published) == ["Catalog", "Collection", "Feature"]
    item, collection = published["Feature"], published["Collection"]
    assert {"proj", "mlm", "raster", "eo", "file", "classification", "processing", "version"} <= (
        stac_fields.used_prefixes(item)
    )
    assert {"mlm", "classification", "processing", "render"} <= stac_fields.used_prefixes(collection)
    assert "render" in stac_fields.used_prefixes(item)
    for doc in published.values():
        assert stac_fields.undeclared_prefixes(doc) == set(), doc["id"]
        assert stac_fields.own_schema_errors(doc) == [], doc["id"]
        validate_stac(doc)


def test_the_checks_see_what_schema_validation_does_not(published):
    item, collection = published["Feature"], published["Collection"]
    undeclared = copy.deepcopy(item)
    undeclared["stac_extensions"] = [
        u for u in item["stac_extensions"] if stac_fields.extension_name(u) not in ("projection", "mlm")
    ]
    schema_only(undeclared)  # still "valid": the schemas that would refuse nothing are simply not applied
    assert stac_fields.undeclared_prefixes(undeclared) == {"proj", "mlm"}
    no_version = copy.deepcopy(item)
    no_version["stac_extensions"] = [u for u in item["stac_extensions"] if stac_fields.extension_name(u) != "version"]
    assert stac_fields.undeclared_prefixes(no_version) == {"version"}
    for doc in (item, collection):
        no_render = {**doc, "stac_extensions": [u for u in doc["stac_extensions"] if "/render/" not in u]}
        assert stac_fields.undeclared_prefixes(no_render) == {"render"}
    bare_collection = {**collection, "stac_extensions": []}
    assert stac_fields.undeclared_prefixes(bare_collection) >= {"mlm", "processing", "classification"}

    def errors(change) -> list[str]:
        doc = copy.deepcopy(item)
        change(doc)
        return stac_fields.own_schema_errors(doc)

    assert errors(lambda d: d["properties"].update({"clouds2mask:cloud_percentage": "12.5"}))
    assert errors(lambda d: d["properties"].update({"clouds2mask:valid_percentage": 100.5}))
    assert errors(lambda d: d["properties"].update({"clouds2mask:cloud_fraction": 0.1}))
    assert errors(lambda d: d["properties"].pop("clouds2mask:settings"))
    assert errors(lambda d: d["properties"]["clouds2mask:settings"].pop("model"))
    assert errors(lambda d: d["properties"].update({"clouds2mask:source_item": ""}))
    assert errors(lambda d: d["assets"]["cloudmask"].update({"clouds2mask:source_item": E}))
    summary = copy.deepcopy(collection)
    summary["summaries"]["clouds2mask:resolution"] = [60]
    assert stac_fields.own_schema_errors(summary)


def test_the_own_schema_ships_as_package_data():
    """The schema file lies in the package and pyproject.toml declares it, so wheels carry it too."""
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = sorted(p.relative_to(ROOT / "stac_clouds2mask") for p in (ROOT / "stac_clouds2mask").rglob("*.json"))
    assert Path("schemas/clouds2mask.json") in shipped
    for path in shipped:
        assert any(fnmatch.fnmatch(str(path), pattern) for pattern in package_data["stac_clouds2mask"]), path
    assert stac_fields.own_schema()["title"].startswith("stac-clouds2mask")
