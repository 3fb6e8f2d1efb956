"""Read: bands onto one grid as reflectance, offset handling on the real D/E pair, clear errors."""

from __future__ import annotations

import copy

import numpy as np
import pystac
import pytest
import rasterio

from conftest import unchanged_items

from stac_clouds2mask.errors import ItemError
from stac_clouds2mask.read import product_level, read_scene, scale_offset
from stac_clouds2mask.search import search

SIX = ("blue", "green", "red", "nir", "swir16", "swir22")
D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
E = "s2b-t32upc-20200406-l1c-n0209-10x10"
CROP_A = "s2a-t19udp-20170729-l1c-160m"
F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"


@pytest.fixture(scope="module")
def items(sample_catalog):
    yield from unchanged_items({i.id: i for i in search(str(sample_catalog))})


def test_offset_removed_d_matches_e_where_they_overlap(items):
    """D (baseline 04.00, DN +1000) and E (02.09) show the same fields: after conversion they agree."""
    d = read_scene(items[D], SIX, resolution=10)
    e = read_scene(items[E], SIX, resolution=60)
    assert d.resolution == 10 and e.resolution == 60
    rows, cols = [], []
    for r in range(d.shape[0]):
        for c in range(d.shape[1]):
            x, y = d.transform @ (c + 0.5, r + 0.5)
            er, ec = rasterio.transform.rowcol(e.transform, x, y)
            rows.append(er)
            cols.append(ec)
    e_at_d = e.reflectance[:, rows, cols].reshape(len(SIX), *d.shape)
    diff = (d.reflectance - e_at_d).mean(axis=(1, 2))
    # Same fields in June 2022 and April 2020: blue and green (least seasonal) agree within 0.025,
    # red and SWIR within 0.06 (crop growth); NIR is left out (vegetation). With the +1000 DN offset
    # left in, D would sit 0.1 higher in every band.
    assert np.all(np.abs(diff[[0, 1]]) < 0.025), diff
    assert np.all(np.abs(diff[[2, 4, 5]]) < 0.06), diff
    assert np.all(np.abs(diff + 0.1)[[0, 1, 2, 4, 5]] > np.abs(diff)[[0, 1, 2, 4, 5]] + 0.05)


def test_scale_offset_from_asset_or_baseline(items):
    item = items[D]
    assert scale_offset(item, "blue", item.assets["blue"]) == (0.0001, -0.1)
    bare = item.clone()
    bare.assets["blue"].extra_fields.pop("bands")
    assert scale_offset(bare, "blue", bare.assets["blue"]) == (0.0001, -0.1)
    bare.properties["s2:processing_baseline"] = "02.09"
    assert scale_offset(bare, "blue", bare.assets["blue"]) == (0.0001, 0.0)


def test_earth_search_item_level_and_raster_bands(shared_dir):
    [es] = search(
        str(
            shared_dir
            / "data"
            / "items-real"
            / "earth-search-v1_sentinel-2-l1c_S2B_27VWK_20240206_0_L1C_search-response.json"
        )
    )
    assert product_level(es) == "L1C"
    assert scale_offset(es, "blue", es.assets["blue"]) == (0.0001, -0.1)


def test_grid_resolution_and_nodata(items):
    a = read_scene(items["s2a-t19udp-20170729-l1c-160m"], SIX, resolution=20)
    assert a.resolution == pytest.approx(159.8253, abs=1e-3)  # coarser data keeps its own grid
    assert 0.55 < a.valid.mean() < 0.7  # the real nodata wedge on the west
    assert not a.valid[:, :50].any()
    f = read_scene(items["ccd-s2-l2a-20200908-epsg32636-512-labelled"], SIX[:4], resolution=20)
    assert f.shape == (256, 256) and f.level == "L2A" and f.crs.to_epsg() == 32636


def test_missing_asset_names_item_and_asset(items):
    item = items[D].clone()
    del item.assets["swir16"]
    with pytest.raises(ItemError) as info:
        read_scene(item, SIX)
    assert info.value.item_id == D and info.value.asset == "swir16" and "no asset" in str(info.value)


def test_unreadable_href_names_item_and_asset(items):
    item = items[D].clone()
    item.assets["red"].href = "/nonexistent/B04.tif"
    with pytest.raises(ItemError, match=r"item 's2b-t32upc-20220615-l1c-n0400-offset-9x8', asset 'red': cannot open"):
        read_scene(item, SIX)


def test_item_without_crs_is_refused(shared_dir):
    [b, _c] = search(str(shared_dir / "data" / "edge-cases" / "catalog.json"))
    with pytest.raises(ItemError, match="no CRS") as info:
        read_scene(b, SIX)
    assert info.value.item_id == "ukis-csmask-s2-l1c-512-labelled" and info.value.asset == "blue"


def test_jp2_assets_read_like_cogs(items, tmp_path):
    """Real pixels of crop E converted losslessly to JPEG 2000 read back to the same reflectance."""
    item = copy.deepcopy(items[E])
    for key in SIX:
        src = item.assets[key].get_absolute_href()
        with rasterio.open(src) as ds:
            profile = {
                "driver": "JP2OpenJPEG",
                "width": ds.width,
                "height": ds.height,
                "count": 1,
                "dtype": "uint16",
                "crs": ds.crs,
                "transform": ds.transform,
                "QUALITY": 100,
                "REVERSIBLE": "YES",
            }
            with rasterio.open(tmp_path / f"{key}.jp2", "w", **profile) as out:
                out.write(ds.read(1), 1)
        item.assets[key] = pystac.Asset(
            href=str(tmp_path / f"{key}.jp2"), media_type="image/jp2", extra_fields=item.assets[key].extra_fields
        )
    cog = read_scene(items[E], SIX, resolution=60)
    jp2 = read_scene(item, SIX, resolution=60)
    np.testing.assert_array_equal(cog.reflectance, jp2.reflectance)


@pytest.mark.parametrize("resolution", [160, 320])
def test_row_blocks_read_the_same_pixels(items, monkeypatch, resolution):
    """Bands read in blocks of rows (so the per-item deadline can stop a read) give the pixels of one
    read, up to what GDAL's warper changes with the window it computes (its approximate transformer:
    1 DN at 1 pixel in 1.4 million, seen here); a block read at the wrong rows would differ widely."""
    from stac_clouds2mask import read

    item = items[CROP_A]
    bands = ("blue", "nir", "swir22")
    whole = read_scene(item, bands, resolution).dn
    monkeypatch.setattr(read, "READ_ROWS", 100)
    blocks = read_scene(item, bands, resolution).dn
    assert whole.shape[1] > 200
    differ = blocks != whole
    assert differ.mean() < 1e-4 and np.abs(blocks.astype(int) - whole).max() <= 1


def test_finer_bands_are_box_averaged_onto_a_coarser_grid(items, sample_data_dir):
    """Crop F's 10 m bands read at 20 m: each pixel is the mean of the four it covers (GDAL rounds to the
    nearest DN), not one of them; nearest-neighbour would keep a quarter of the pixels and drop the rest."""
    scene = read_scene(items[F], SIX[:4], resolution=20)
    for band, key in zip(scene.dn, ("B02", "B03", "B04", "B08")):
        with rasterio.open(sample_data_dir / F / f"{key}.tif") as ds:
            fine = ds.read(1).astype(float)
        boxes = fine.reshape(256, 2, 256, 2).mean(axis=(1, 3))
        assert np.abs(band - boxes).max() <= 0.5 + 1e-9, key
        assert np.abs(band - fine[::2, ::2]).max() > 100, key  # the sample is no flat field: the test can tell
