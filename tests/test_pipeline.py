"""End to end on the real sample catalog: every usable item published as a valid COG + STAC item,
bad items failing with errors that name item, asset and reason, the rest of the batch unharmed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate
from typer.testing import CliRunner

from stac_clouds2mask.cli import app

USABLE = {
    "s2a-t19udp-20170729-l1c-160m",
    "s2b-t32upc-20220615-l1c-n0400-offset-9x8",
    "s2b-t32upc-20200406-l1c-n0209-10x10",
    "ccd-s2-l2a-20200908-epsg32636-512-labelled",
    "ccd-s2-l2a-20200403-epsg32737-512-labelled",
}
F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def full_run(sample_catalog, tmp_path_factory):
    """One CLI run over the usable catalog and the edge cases (B: no CRS, C: B01 only)."""
    out = tmp_path_factory.mktemp("masks")
    edge = sample_catalog.parent / "edge-cases" / "catalog.json"
    result = invoke("run", str(sample_catalog), str(edge), "--output", str(out))
    return out, result


def published_items(out: Path) -> dict[str, dict]:
    items = {}
    for path in out.glob("*/*/*.json"):
        d = json.loads(path.read_text())
        items[d["properties"]["clouds2mask:source_item"]] = {"path": path, **d}
    return items


def test_batch_publishes_usable_items_and_reports_failures(full_run):
    out, result = full_run
    assert result.exit_code == 1, result.output
    assert set(published_items(out)) == USABLE
    assert "5 published, 0 skipped, 2 failed" in result.output
    text = " ".join(result.output.split())
    assert "ukis-csmask-s2-l1c-512-labelled" in text and "no CRS" in text
    assert "s2a-t31tdh-20180101-l1c-b01-only" in text and "missing: blue, green, red, nir" in text
    assert "Failed items" in text


def test_every_published_document_validates(full_run, validate_stac):
    out, _ = full_run
    docs = [p for p in out.rglob("*.json") if ".clouds2mask-runs" not in p.parts]  # run reports are not STAC
    assert len(docs) == len(USABLE) + 3  # items, two collections, root catalog
    for path in docs:
        validate_stac(json.loads(path.read_text()))


def test_masks_are_valid_cogs_on_the_source_grid(full_run, sample_data_dir):
    out, _ = full_run
    for source_id, item in published_items(out).items():
        asset = item["assets"]["cloudmask"]
        tif = item["path"].parent / asset["href"]
        valid, errors, _warnings = cog_validate(str(tif))
        assert valid, (tif, errors)
        assert asset["file:size"] == tif.stat().st_size
        with rasterio.open(tif) as ds:
            classes = ds.read(1)
            assert ds.nodata == 255 and ds.dtypes[0] == "uint8"
            assert [ds.height, ds.width] == item["properties"]["proj:shape"]
            assert list(ds.transform)[:6] == item["properties"]["proj:transform"]
            assert f"EPSG:{ds.crs.to_epsg()}" == item["properties"]["proj:code"]
        assert set(np.unique(classes)) <= {0, 1, 2, 255}
        props = item["properties"]
        share = sum(props[f"clouds2mask:{k}_percentage"] for k in ("cloud", "shadow", "clear"))
        assert share == pytest.approx(100.0, abs=0.01)
        assert props["clouds2mask:valid_percentage"] == pytest.approx(100.0 * (classes != 255).mean(), abs=0.01)
        [derived] = [l for l in item["links"] if l["rel"] == "derived_from"]
        assert derived["href"] == str(sample_data_dir / source_id / f"{source_id}.json")
    a = published_items(out)["s2a-t19udp-20170729-l1c-160m"]["properties"]
    assert 55 < a["clouds2mask:valid_percentage"] < 70  # the real nodata wedge stays nodata, not "clear"
    assert a["clouds2mask:cloud_percentage"] > 5  # a cloudy granule (ESA: 24.5 %)


def stamps(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """(inode, mtime in ns, bytes) of every file under `folder`: a rewrite changes them, a skip does not."""
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
        for p in folder.rglob("*")
        if p.is_file() and ".clouds2mask-runs" not in p.parts
    }


def test_rerun_skips_and_overwrite_replaces(full_run, sample_catalog, tmp_path):
    """A rerun rewrites nothing; --overwrite rewrites the item and its assets (new files, not the old ones
    left in place with a later timestamp) and nothing of the other items. On a copy of the module's run."""
    out = tmp_path / "masks"
    shutil.copytree(full_run[0], out)
    d = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
    before = stamps(out)
    again = invoke("run", str(sample_catalog), "--output", str(out), "--ids", d)
    assert again.exit_code == 0 and "0 published, 1 skipped, 0 failed" in again.output
    assert stamps(out) == before
    forced = invoke("run", str(sample_catalog), "--output", str(out), "--overwrite", "--ids", d)
    assert forced.exit_code == 0 and "1 published" in forced.output
    after = published_items(out)
    assert set(after) == USABLE
    now = stamps(out)
    rewritten = {k for k in now if now[k][:2] != before.get(k, (None, None, None))[:2]}
    mine = f"sentinel-2-l1c-samples-cloudmask/{d}_cloudmask/{d}_cloudmask"
    assets = {f"{mine}.json", f"{mine}.tif", f"{mine}.tif.aux.xml", f"{mine}.png"}
    assert assets <= rewritten, sorted(rewritten)
    assert {k for k in rewritten if "_cloudmask/" in k} == assets
    assert now[f"{mine}.json"][2] != before[f"{mine}.json"][2]  # a new processing:datetime at least
    assert (
        after[d]["properties"]["processing:datetime"]
        >= json.loads(before[f"{mine}.json"][2])["properties"]["processing:datetime"]
    )
    collection = json.loads((out / "sentinel-2-l1c-samples-cloudmask" / "collection.json").read_text())
    assert len([l for l in collection["links"] if l["rel"] == "item"]) == 3


def test_bad_items_fail_alone(sample_data_dir, tmp_path):
    """A missing asset, an unreadable href: each fails naming item, asset and reason; F is still published."""
    src = json.loads((sample_data_dir / F / f"{F}.json").read_text())
    for asset in src["assets"].values():
        asset["href"] = str(sample_data_dir / F / Path(asset["href"]).name)
    no_nir = json.loads(json.dumps(src))
    no_nir["id"] = "f-without-nir"
    del no_nir["assets"]["nir"]
    bad_href = json.loads(json.dumps(src))
    bad_href["id"] = "f-bad-href"
    bad_href["assets"]["red"]["href"] = str(tmp_path / "missing" / "B04.tif")
    fc = tmp_path / "items.json"
    fc.write_text(json.dumps({"type": "FeatureCollection", "features": [no_nir, src, bad_href]}))
    out = tmp_path / "out"
    result = invoke("run", str(fc), "--output", str(out))
    text = " ".join(result.output.split())
    assert result.exit_code == 1, text
    assert "1 published, 0 skipped, 2 failed" in text
    assert "f-without-nir" in text and "missing: nir" in text
    assert "f-bad-href" in text and "asset 'red': cannot open" in text
    assert set(published_items(out)) == {F}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resolution", "15"], "--resolution must be one of"),
        (["--model", "model_9b"], "unknown model"),
        (["--bbox", "10", "52", "11", "51"], "south 52.0 above north 51.0"),
        (["--datetime", "2024-02-30"], "not RFC 3339"),
        (["--max-cloud", "120"], "between 0 and 100"),
    ],
)
def test_bad_invocation_exits_2(sample_catalog, tmp_path, args, message):
    result = invoke("run", str(sample_catalog), "--output", str(tmp_path / "o"), *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_models_command_lists_embedded_models():
    result = invoke("models", "--json")
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["model_6b_l1c", "model_4b_l1c", "model_6b_l2a", "model_4b_l2a"]
    assert rows[0]["bands"] == ["blue", "green", "red", "nir", "swir16", "swir22"]


def test_batch_overlaps_read_infer_write_in_three_threads(sample_catalog, tmp_path):
    """Reading runs in a reader thread, inference in the caller's, publishing in a writer thread;
    outcomes come back in input order."""
    import threading

    from stac_clouds2mask.config import RunConfig
    from stac_clouds2mask.report import Progress
    from stac_clouds2mask.runner import Runner
    from stac_clouds2mask.search import SearchFilters, search

    class Record(Progress):
        def __init__(self):
            self.events: list[tuple[str, str, str]] = []

        def stage(self, item_id: str, stage: str) -> None:
            self.events.append((item_id, stage, threading.current_thread().name))

    items = search(str(sample_catalog), SearchFilters(collections=("sentinel-2-l1c-samples",)))
    record = Record()
    report = Runner(RunConfig(output=str(tmp_path / "m"), device="cpu"), record).run(items)
    assert [o.source_id for o in report.outcomes] == [i.id for i in items]
    assert {o.status for o in report.outcomes} == {"published"}
    threads = {
        stage: {t.split("_")[0] for _, s, t in record.events if s == stage} for stage in ("read", "infer", "publish")
    }
    assert threads == {"read": {"read"}, "infer": {threading.current_thread().name.split("_")[0]}, "publish": {"write"}}


def test_probabilities_asset(sample_catalog, tmp_path, validate_stac):
    """--probabilities publishes a 3-band uint8 COG whose argmax is the class map."""
    out = tmp_path / "p"
    result = invoke("run", str(sample_catalog), "--output", str(out), "--probabilities", "--ids", F)
    assert result.exit_code == 0, result.output
    [item] = published_items(out).values()
    validate_stac({k: v for k, v in item.items() if k != "path"})
    asset = item["assets"]["probabilities"]
    tif = item["path"].parent / asset["href"]
    assert cog_validate(str(tif))[0] and asset["file:size"] == tif.stat().st_size
    with rasterio.open(tif) as ds:
        probs = ds.read()
        assert ds.count == 3 and ds.dtypes[0] == "uint8"
    with rasterio.open(item["path"].parent / item["assets"]["cloudmask"]["href"]) as ds:
        classes = ds.read(1)
    valid = classes != 255
    assert (probs.argmax(axis=0)[valid] == classes[valid]).mean() > 0.99  # rounding to 0-255 can tie
    assert np.abs(probs.astype(int).sum(axis=0)[valid] - 255).max() <= 2
