"""The +1000 radiometric offset end to end: crop E's DNs + 1000, declaring processing baseline 04.00, go
through `run` and come out as E's own mask and class probabilities. A dropped offset anywhere between
the read and the model (the Scene right, predict() told 0) shifts every reflectance by 0.1; E is clear
land whose classes survive that, so the probabilities are compared too: they move by far more than 1/255."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio

from stac_clouds2mask import RunConfig, run

E = "s2b-t32upc-20200406-l1c-n0209-10x10"


def copy_crop(sample_data_dir: Path, dest: Path, item_id: str, *, plus_1000: bool) -> Path:
    """Crop E as a local item named `item_id`; with `plus_1000`, every DN but 0 (no data) + 1000 and
    baseline 04.00 declared, the per-band scale/offset left out so the read derives it from the baseline."""
    src = sample_data_dir / E
    d = json.loads((src / f"{E}.json").read_text())
    folder = dest / item_id
    folder.mkdir(parents=True)
    d["id"], d["links"] = item_id, []
    d.pop("collection", None)
    if plus_1000:
        d["properties"]["s2:processing_baseline"] = "04.00"
        d["properties"]["sample:dn_offset"] = 1000
    for asset in d["assets"].values():
        name = Path(asset["href"]).name
        if not name.endswith(".tif"):
            asset["href"] = str(src / name)
            continue
        asset["href"] = str(folder / name)
        for band in asset.get("bands", []):
            band.pop("raster:offset", None)
            band.pop("raster:scale", None)
        with rasterio.open(src / name) as ds:
            profile, dn = ds.profile, ds.read()
        if plus_1000:
            dn = np.where(dn == 0, dn, dn + 1000).astype(dn.dtype)
        with rasterio.open(folder / name, "w", **profile) as out:
            out.write(dn)
    path = folder / f"{item_id}.json"
    path.write_text(json.dumps(d))
    return path


def read_asset(out: Path, item_id: str, suffix: str) -> np.ndarray:
    [tif] = out.rglob(f"{item_id}_cloudmask{suffix}")
    with rasterio.open(tif) as ds:
        return ds.read()


def test_plus_1000_dns_at_baseline_04_give_crop_e_s_mask(sample_data_dir, tmp_path):
    plain = copy_crop(sample_data_dir, tmp_path / "src", "e-plain", plus_1000=False)
    shifted = copy_crop(sample_data_dir, tmp_path / "src", "e-plus-1000", plus_1000=True)
    out = tmp_path / "out"
    report = run(
        [str(plain), str(shifted)], RunConfig(output=str(out), device="cpu", resolution=60, probabilities=True)
    )
    assert [o.status for o in report.outcomes] == ["published", "published"], [o.error for o in report.outcomes]

    mask_e, mask_shifted = read_asset(out, "e-plain", ".tif"), read_asset(out, "e-plus-1000", ".tif")
    assert mask_e.shape == (1, 10, 10) and (mask_e != 255).sum() > 90
    np.testing.assert_array_equal(mask_shifted, mask_e)
    probs_e = read_asset(out, "e-plain", "_probabilities.tif").astype(int)
    probs_shifted = read_asset(out, "e-plus-1000", "_probabilities.tif").astype(int)
    assert probs_e.shape == (3, 10, 10)
    assert np.abs(probs_shifted - probs_e).max() <= 1  # float rounding of (DN + 1000) * 1e-4 - 0.1 only
