"""Read: grids that are not the samples' own. Each fixture is cut at test time from the real crops in
../shared/data (never copied into the repository): a band coarser than the others, a pixel that is nodata
in one band only, an extent that is no multiple of the processing resolution, a product folder holding
both B08 and B8A. Everything is read through read_scene (or a whole run), as users meet it."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from conftest import unchanged_items
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from stac_clouds2mask.config import RunConfig
from stac_clouds2mask.read import read_scene
from stac_clouds2mask.runner import run
from stac_clouds2mask.scene import BAND_SUBSTITUTES
from stac_clouds2mask.search import SearchFilters, search

F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
FOUR = ("blue", "green", "red", "nir")
SIX = ("blue", "green", "red", "nir", "swir16", "swir22")
SAFE = "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
NODATA = 255


@pytest.fixture(scope="module")
def sources(sample_catalog):
    yield from unchanged_items({i.id: i for i in search(str(sample_catalog), SearchFilters(ids=(F, D)))})


def cut(
    source: pystac.Item,
    folder: Path,
    rows: slice,
    cols: slice,
    *,
    coarser: dict[str, int] | None = None,
    edit: Callable[[str, np.ndarray], None] | None = None,
    nodata_tags: bool = True,
) -> pystac.Item:
    """An item in ``folder`` over ``rows`` x ``cols`` of ``source``'s single-band data assets, each written
    as a GeoTIFF of the real pixels. A band named in ``coarser`` with factor k keeps the centre pixel of each
    k x k block on a k times coarser grid of the same extent (as Sentinel-2's 20 m bands sit on its 10 m
    ones); ``edit(key, pixels)`` changes pixels in place before writing; without ``nodata_tags`` the files
    carry no nodata value, so only the item's declared one says what is nodata."""
    folder.mkdir(parents=True)
    d = copy.deepcopy(source.to_dict(include_self_link=False, transform_hrefs=False))
    d["links"] = []
    for key in ("proj:shape", "proj:transform"):
        d["properties"].pop(key, None)
    keep = {}
    for key, asset in source.assets.items():
        if "data" not in (asset.roles or []):
            continue
        with rasterio.open(asset.get_absolute_href()) as ds:
            window = Window.from_slices(rows, cols)
            pixels, transform, crs, nodata = ds.read(1, window=window), ds.window_transform(window), ds.crs, ds.nodata
            bounds = rasterio.windows.bounds(window, ds.transform)
        k = (coarser or {}).get(key, 1)
        pixels = np.ascontiguousarray(pixels[k // 2 :: k, k // 2 :: k])
        transform = transform * Affine.scale(k)
        if edit:
            edit(key, pixels)
        profile = {
            "driver": "GTiff",
            "width": pixels.shape[1],
            "height": pixels.shape[0],
            "count": 1,
            "dtype": pixels.dtype,
            "crs": crs,
            "transform": transform,
            "nodata": nodata if nodata_tags else None,
        }
        with rasterio.open(folder / f"{key}.tif", "w", **profile) as out:
            out.write(pixels, 1)
        keep[key] = {k2: v for k2, v in d["assets"][key].items() if k2 not in ("proj:shape", "proj:transform", "gsd")}
        keep[key]["href"] = f"./{key}.tif"
    d["assets"] = keep
    w, s, e, n = transform_bounds(crs, "EPSG:4326", *bounds)
    d["bbox"] = [w, s, e, n]
    d["geometry"] = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    path = folder / f"{source.id}.json"
    path.write_text(json.dumps(d))
    return pystac.Item.from_file(str(path))


def file_bounds(item: pystac.Item, key: str) -> rasterio.coords.BoundingBox:
    with rasterio.open(item.assets[key].get_absolute_href()) as ds:
        return ds.bounds


def pixels(item: pystac.Item, key: str) -> np.ndarray:
    with rasterio.open(item.assets[key].get_absolute_href()) as ds:
        return ds.read(1)


def swath_edge(rows: int, cols: int, slope: float, offset: float) -> np.ndarray:
    """bool (rows, cols): True west of a slanted line, like the nodata wedge of a swath-edge tile."""
    r, c = np.mgrid[:rows, :cols]
    return c < r * slope + offset


# ------------------------------------------------------------------------------------------
# mixed band resolutions
# ------------------------------------------------------------------------------------------


def test_a_coarser_band_is_its_nearest_neighbour_upsampling_and_its_nodata_stays_whole(sources, tmp_path):
    """Crop F with its nir band on a 20 m grid (nodata wedge included) read at 10 m: every nir pixel is the
    20 m pixel it lies in, repeated 2 x 2 (no blend of neighbours, no blend of nodata into data), and the
    nodata wedge is exactly the 20 m wedge made finer."""

    def wedge(key: str, px: np.ndarray) -> None:
        if key == "nir":
            px[swath_edge(*px.shape, 0.6, 10)] = 0

    item = cut(sources[F], tmp_path / "cut", slice(0, 128), slice(0, 160), coarser={"nir": 2}, edit=wedge)
    coarse = pixels(item, "nir")
    assert coarse.shape == (64, 80) and (coarse == 0).any() and (coarse != 0).any()
    scene = read_scene(item, FOUR, resolution=10)
    assert scene.shape == (128, 160) and scene.resolution == 10
    upsampled = np.kron(coarse, np.ones((2, 2), coarse.dtype))
    np.testing.assert_array_equal(scene.dn[3], upsampled)
    for i, key in enumerate(FOUR[:3]):
        np.testing.assert_array_equal(scene.dn[i], pixels(item, key))
    np.testing.assert_array_equal(scene.valid, upsampled != 0)


def test_finer_bands_average_only_their_data_onto_a_coarser_grid(sources, tmp_path):
    """The same cut read at 20 m, a nodata edge in the 10 m green band that cuts 2 x 2 boxes in half and no
    nodata tag in the files (only the item declares 0): each green pixel is the mean of the data pixels of
    its box, never pulled towards 0 by the nodata ones; a box without data stays nodata."""

    def edge(key: str, px: np.ndarray) -> None:
        if key == "green":
            px[swath_edge(*px.shape, 1.0, 7)] = 0

    item = cut(
        sources[F], tmp_path / "cut", slice(0, 128), slice(0, 160), coarser={"nir": 2}, edit=edge, nodata_tags=False
    )
    scene = read_scene(item, FOUR, resolution=20)
    assert scene.shape == (64, 80)
    np.testing.assert_array_equal(scene.dn[3], pixels(item, "nir"))  # already on the grid: as stored
    fine = pixels(item, "green").astype(float)
    boxes = fine.reshape(64, 2, 80, 2).transpose(0, 2, 1, 3).reshape(64, 80, 4)
    data = np.where(boxes > 0, boxes, np.nan)
    partial = np.isfinite(data).any(-1) & ~np.isfinite(data).all(-1)
    assert partial.sum() > 50  # the edge really cuts boxes
    with pytest.warns(RuntimeWarning, match="empty"):  # boxes without data: NaN
        mean = np.nanmean(data, -1)
    green = scene.dn[1].astype(float)
    assert np.abs(green - np.nan_to_num(mean))[np.isfinite(mean)].max() <= 0.5 + 1e-9
    assert (green[partial] >= np.nanmin(data[partial], -1) - 0.5).all()
    assert (green[~np.isfinite(mean)] == 0).all() and not scene.valid[~np.isfinite(mean)].any()


# ------------------------------------------------------------------------------------------
# extents that are no multiple of the processing resolution
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [20, 30, 60])
def test_the_grid_covers_a_source_whose_extent_is_no_multiple_of_the_resolution(sources, tmp_path, resolution):
    """511 x 509 px of crop F at 10 m: the grid starts at the source's top-left corner, has
    ceil(extent / resolution) pixels per axis, so it covers the whole source, and its last row and
    column (partly outside the source) still hold the data of the part inside."""
    item = cut(sources[F], tmp_path / "cut", slice(0, 509), slice(0, 511))
    scene = read_scene(item, FOUR, resolution=resolution)
    src = file_bounds(item, "blue")
    assert scene.shape == (math.ceil(5090 / resolution), math.ceil(5110 / resolution))
    assert (scene.transform.c, scene.transform.f) == (src.left, src.top)
    height, width = scene.shape
    right, bottom = scene.transform * (width, height)
    assert right >= src.right and bottom <= src.bottom
    assert right - src.right < resolution and src.bottom - bottom < resolution
    assert scene.valid[-1].all() and scene.valid[:, -1].all()


def test_the_published_mask_covers_the_whole_source(sources, tmp_path, validate_stac):
    """The same cut through a whole run at 20 m (real model): the mask COG and the item's proj:bbox cover the
    source raster, and the item's bbox is the source item's."""
    item = cut(sources[F], tmp_path / "cut", slice(0, 509), slice(0, 511))
    report = run(item.get_self_href(), RunConfig(output=str(tmp_path / "out"), device="cpu", resolution=20))
    [outcome] = report.outcomes
    assert outcome.status == "published", outcome.error
    mask = outcome.item
    published = json.loads((tmp_path / "out" / mask.collection_id / mask.id / f"{mask.id}.json").read_text())
    validate_stac(published)
    src = file_bounds(item, "blue")
    with rasterio.open(outcome.item.assets["cloudmask"].get_absolute_href()) as ds:
        assert (ds.height, ds.width) == (255, 256)
        mask_bounds = ds.bounds
    left, bottom, right, top = published["properties"]["proj:bbox"]
    assert list(mask_bounds) == pytest.approx([left, bottom, right, top])
    assert left <= src.left and bottom <= src.bottom and right >= src.right and top >= src.top
    assert published["bbox"] == pytest.approx(list(item.bbox))


# ------------------------------------------------------------------------------------------
# nodata in one band only
# ------------------------------------------------------------------------------------------


def _f_holes(key: str, px: np.ndarray) -> None:
    if key == "green":
        px[5, 7] = 0
    if key == "nir":
        px[50, 90] = 0


def _d_hole(key: str, px: np.ndarray) -> None:
    if key == "red":
        px[3, 4] = 65535  # crop D's declared nodata value


@pytest.mark.parametrize(
    ("crop", "rows", "cols", "edit", "holes", "tags"),
    [
        (F, slice(0, 64), slice(0, 96), _f_holes, [(5, 7), (50, 90)], True),
        (D, slice(0, 8), slice(0, 9), _d_hole, [(3, 4)], True),
        (D, slice(0, 8), slice(0, 9), _d_hole, [(3, 4)], False),
    ],
    ids=["F-zero-in-green-and-nir", "D-65535-in-red", "D-65535-in-red-declared-by-the-item-only"],
)
def test_a_pixel_that_is_nodata_in_any_band_is_nodata_in_the_mask(
    sources, tmp_path, crop, rows, cols, edit, holes, tags
):
    """Real pixels with a hole in one band only (not the first one read): after a whole run (real model, at
    the crop's native 10 m) the mask says nodata (255) there and nowhere else (the crops have no other nodata)."""
    item = cut(sources[crop], tmp_path / "cut", rows, cols, edit=edit, nodata_tags=tags)
    report = run(item.get_self_href(), RunConfig(output=str(tmp_path / "out"), device="cpu", resolution=10))
    [outcome] = report.outcomes
    assert outcome.status == "published", outcome.error
    with rasterio.open(outcome.item.assets["cloudmask"].get_absolute_href()) as ds:
        classes = ds.read(1)
    assert classes.shape == (rows.stop - rows.start, cols.stop - cols.start)
    expected = np.zeros(classes.shape, bool)
    expected[tuple(np.array(holes).T)] = True
    np.testing.assert_array_equal(classes == NODATA, expected)


# ------------------------------------------------------------------------------------------
# a product folder holding both B08 and B8A
# ------------------------------------------------------------------------------------------


def mirror_product(safe: Path, target: Path) -> Path:
    """A copy of the real product folder (hard links where the file system allows: the product folder is the
    boundary of what a product may name, so symbolic links out of it are refused), so files can be added."""
    shutil.copytree(safe, target, copy_function=_link_or_copy, dirs_exist_ok=True)
    return target


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def add_b08(product: Path) -> Path:
    """A 10 m B08 file of 240 x 240 px: the product's real 60 m B8A pixels of a window with data, each
    repeated 6 x 6, georeferenced where they lie (the sample folder keeps no 10 m file; Sen2Cor writes B08
    at 10 m only)."""
    [img] = list(product.glob("GRANULE/*/IMG_DATA"))
    [b8a] = list(img.glob("R60m/*_B8A_60m.jp2"))
    window = Window(100, 300, 40, 40)
    with rasterio.open(b8a) as ds:
        coarse, transform, crs = ds.read(1, window=window), ds.window_transform(window), ds.crs
    assert (coarse > 0).all()
    fine = np.kron(coarse, np.ones((6, 6), coarse.dtype))
    (img / "R10m").mkdir(exist_ok=True)
    path = img / "R10m" / b8a.name.replace("_B8A_60m", "_B08_10m")
    profile = {
        "driver": "JP2OpenJPEG",
        "width": 240,
        "height": 240,
        "count": 1,
        "dtype": "uint16",
        "crs": crs,
        "transform": transform * Affine.scale(1 / 6),
        "QUALITY": 100,
        "REVERSIBLE": "YES",
    }
    with rasterio.open(path, "w", **profile) as out:
        out.write(fine, 1)
    return path


def test_a_product_folder_with_b08_and_b8a_reads_b08(sample_data_dir, tmp_path):
    """B8A stands in for B08 only where B08 is absent: with a B08 file in the folder the nir band is read
    from it, and no stand-in is recorded; the same folder without it falls back to B8A and says so."""
    product = mirror_product(sample_data_dir / "safe" / SAFE, tmp_path / SAFE)
    [without] = search(str(product))
    assert without.assets["nir"].href.endswith("_B8A_60m.jp2")
    assert without.properties[BAND_SUBSTITUTES] == {"nir": "B8A"}

    b08 = add_b08(product)
    [item] = search(str(product))
    assert item.assets["nir"].href == str(b08)
    assert BAND_SUBSTITUTES not in item.properties
    scene = read_scene(item, SIX, resolution=20)
    assert scene.assets["nir"] == str(b08)
    assert scene.shape == (120, 120) and scene.resolution == 20  # the grid of the finest band, B08
    assert all(href.endswith("_60m.jp2") for key, href in scene.assets.items() if key != "nir")
