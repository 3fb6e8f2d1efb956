"""Mask overviews never average classes: a published 2048 px mask (two overview levels) holds only
{0, 1, 2, 255} in every overview, and each overview pixel is the mode of the 2x2 pixels below it.

GDAL builds each level from the one above it, so level k is compared with the mode of level k-1 (the
full-resolution mask for the first). Nodata (255) takes part only where a window holds nothing else;
where classes tie, any of the tied ones is a mode. Classes 0 and 2 mixed average to 1, a class that
exists: only the comparison with the mode tells averaging from mode."""

from __future__ import annotations

import dataclasses

import numpy as np
import rasterio
from affine import Affine

from stac_clouds2mask.model import get_model_spec
from stac_clouds2mask.publish import Publisher, StaticCatalog
from stac_clouds2mask.read import read_scene
from stac_clouds2mask.scene import MaskResult
from stac_clouds2mask.search import SearchFilters, search

F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
SIZE = 2048
SETTINGS = {"model": "model_4b_l2a", "model_version": "x", "resolution": 10, "software": "0.1.0"}


def synthetic_classes(seed: int = 5) -> np.ndarray:
    """16 px patches of one class, 30 % of pixels of a random class, and a nodata corner with a ragged edge."""
    rng = np.random.default_rng(seed)
    patches = np.kron(rng.integers(0, 3, (SIZE // 16, SIZE // 16)), np.ones((16, 16), int))
    noisy = rng.random((SIZE, SIZE)) < 0.3
    classes = np.where(noisy, rng.integers(0, 3, (SIZE, SIZE)), patches).astype(np.uint8)
    classes[:200, :600] = 255
    edge = classes[200:240, :600]
    edge[rng.random(edge.shape) < 0.5] = 255
    return classes


def is_mode_of_2x2(parent: np.ndarray, child: np.ndarray) -> np.ndarray:
    """Per child pixel: whether it is a mode of its 2x2 window in `parent` (255 only for all-nodata windows)."""
    h, w = child.shape
    windows = parent[: 2 * h, : 2 * w].reshape(h, 2, w, 2).transpose(0, 2, 1, 3).reshape(h, w, 4)
    counts = np.stack([(windows == c).sum(-1) for c in (0, 1, 2)], -1)
    best = counts.max(-1)
    is_best = np.take_along_axis(counts, np.minimum(child, 2)[..., None].astype(int), -1)[..., 0] == best
    return np.where(best == 0, child == 255, (child != 255) & is_best)


def test_published_mask_overviews_are_the_mode_and_hold_only_classes(sample_catalog, tmp_path):
    [source] = search(str(sample_catalog), SearchFilters(ids=(F,)))
    scene = read_scene(source, ("blue", "green", "red", "nir"), 10).without_pixels()
    t = scene.transform
    scene = dataclasses.replace(scene, valid=np.ones((SIZE, SIZE), bool), transform=Affine(2.5, 0, t.c, 0, -2.5, t.f))
    classes = synthetic_classes()
    result = MaskResult(scene=scene, classes=classes, model_name="model_4b_l2a", settings=dict(SETTINGS))
    item = Publisher(StaticCatalog(str(tmp_path))).publish(result, get_model_spec("model_4b_l2a"))

    [tif] = tmp_path.rglob(f"{item.id}.tif")
    with rasterio.open(tif) as ds:
        assert ds.shape == (SIZE, SIZE)
        np.testing.assert_array_equal(ds.read(1), classes)
        factors = ds.overviews(1)
    assert factors == [2, 4]
    parent = classes
    for level, factor in enumerate(factors):
        with rasterio.open(tif, overview_level=level) as ov:
            child = ov.read(1)
        assert child.shape == (SIZE // factor, SIZE // factor)
        assert set(np.unique(child)) <= {0, 1, 2, 255}, (factor, np.unique(child))
        assert {0, 1, 2, 255} <= set(np.unique(child)), factor  # every class still there to be compared
        wrong = ~is_mode_of_2x2(parent, child)
        assert not wrong.any(), f"overview 1/{factor}: {wrong.sum()} pixels are not the mode of the level above"
        parent = child
