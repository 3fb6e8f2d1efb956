"""Fidelity of the whole pipeline against ukis-csmask's own onnxruntime path on the labelled crops.

F and G are real 4-band L2A chips at native 10 m with binary cloud labels. The reference is
ukis-csmask's public CSmask (onnxruntime, a test-only dependency) on the same reflectance. Its patch
grid differs from ours, so ~2 % of classes may differ (the guard of test_quality.py): labels judge.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from stac_clouds2mask.cli import app

CROPS = ("ccd-s2-l2a-20200908-epsg32636-512-labelled", "ccd-s2-l2a-20200403-epsg32737-512-labelled")
BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    return float((pred & truth).sum() / max(1, (pred | truth).sum()))


@pytest.fixture(scope="module")
def masks_10m(sample_catalog, tmp_path_factory):
    out = tmp_path_factory.mktemp("fidelity")
    result = CliRunner().invoke(
        app,
        ["run", str(sample_catalog), "--output", str(out), "--resolution", "10", "--ids", ",".join(CROPS)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    masks = {}
    for crop in CROPS:
        item_dir = out / "sentinel-2-l2a-samples-cloudmask" / f"{crop}_cloudmask"
        item = json.loads((item_dir / f"{crop}_cloudmask.json").read_text())
        assert item["properties"]["mlm:name"] == "model_4b_l2a"
        with rasterio.open(item_dir / f"{crop}_cloudmask.tif") as ds:
            masks[crop] = ds.read(1)
    return masks


@pytest.mark.parametrize("crop", CROPS)
def test_pipeline_agrees_with_ukis_csmask_at_10m(masks_10m, sample_data_dir, crop):
    from ukis_csmask.mask import CSmask

    folder = sample_data_dir / crop
    bands = []
    for name in BANDS.values():
        with rasterio.open(folder / f"{name}.tif") as ds:
            bands.append(ds.read(1).astype(np.float32) * np.float32(0.0001))
    img = np.stack(bands, axis=-1)
    reference = CSmask(img, band_order=list(BANDS), product_level="l2a").csm[..., 0]
    ours = masks_10m[crop]
    assert ours.shape == reference.shape
    valid = ours != 255
    assert valid.mean() > 0.99
    agreement = float((ours[valid] == reference[valid]).mean())
    with rasterio.open(folder / "labels.tif") as ds:
        cloud_truth = ds.read(1) == 1
    ours_iou, ref_iou = iou(ours == 1, cloud_truth), iou(reference == 1, cloud_truth)
    print(
        f"\n{crop}: agreement with ukis-csmask {agreement:.4%}; cloud IoU vs labels: "
        f"stac-clouds2mask {ours_iou:.4f}, ukis-csmask {ref_iou:.4f}"
    )
    assert agreement >= 0.975
    assert ours_iou >= ref_iou - 0.01


def test_array_api_agrees_with_ukis_csmask_on_crop_b(sample_data_dir):
    """Crop B (ukis-csmask's own 6-band L1C test scene, no georeference) through `mask_array`."""
    from ukis_csmask.mask import CSmask

    from stac_clouds2mask import mask_array

    folder = sample_data_dir / "ukis-csmask-s2-l1c-512-labelled"
    names = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12"}
    # deliberately not in the model's order: mask_array must reorder by name
    order = ["swir22", "nir", "blue", "green", "red", "swir16"]
    stack = []
    for band in order:
        with rasterio.open(folder / f"{names[band]}.tif") as ds:
            stack.append(ds.read(1).astype(np.float32) * np.float32(0.0001))
    chw = np.stack(stack)
    ours = mask_array(chw, order, level="L1C", device="cpu").classes
    reference = CSmask(np.moveaxis(chw, 0, -1).copy(), band_order=order, product_level="l1c").csm[..., 0]
    agreement = float((ours == reference).mean())
    with rasterio.open(folder / "labels.tif") as ds:
        labels = ds.read(1)
    ours_iou, ref_iou = iou(ours == 1, labels == 4), iou(reference == 1, labels == 4)
    shadow_ours, shadow_ref = iou(ours == 2, labels == 0), iou(reference == 2, labels == 0)
    print(
        f"\ncrop B: agreement with ukis-csmask {agreement:.4%}; cloud IoU vs labels: stac-clouds2mask {ours_iou:.4f}, "
        f"ukis-csmask {ref_iou:.4f}; shadow IoU: {shadow_ours:.4f} vs {shadow_ref:.4f}"
    )
    assert agreement >= 0.975
    assert ours_iou >= ref_iou - 0.01
