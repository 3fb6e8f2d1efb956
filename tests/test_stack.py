"""stack: source bands and their published masks, aligned by stackstac on one grid, masked pixels NaN.

The masks are made by the real pipeline (`run`) on crops F and G of the sample catalog: at 20 m
(so the 256 x 256 mask has to land exactly on 2 x 2 cells of the native 10 m grid) and at 10 m."""

from __future__ import annotations

import json

import dask
import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from stac_clouds2mask.cli import app
from stac_clouds2mask.search import SearchFilters, search
from stac_clouds2mask.stack import find_masks, stack_masked, stack_sources_and_masks

F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
G = "ccd-s2-l2a-20200403-epsg32737-512-labelled"
L2A = "sentinel-2-l2a-samples-cloudmask"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def masks20(sample_catalog, tmp_path_factory):
    out = tmp_path_factory.mktemp("masks20")
    result = invoke("run", str(sample_catalog), "--output", str(out), "--ids", f"{F},{G}", "--resolution", "20")
    assert result.exit_code == 0, result.output
    return out


def sources(sample_catalog, *ids):
    return search(str(sample_catalog), SearchFilters(ids=ids))


def read_mask(root, source_id):
    with rasterio.open(root / L2A / f"{source_id}_cloudmask" / f"{source_id}_cloudmask.tif") as ds:
        return ds.read(1), ds.transform


@pytest.mark.parametrize("sid", [F, G])
def test_masks_line_up_with_source_pixels(masks20, sample_catalog, sample_data_dir, sid):
    items = sources(sample_catalog, sid)
    data, classes = stack_sources_and_masks(items, str(masks20 / "catalog.json"))
    with rasterio.open(sample_data_dir / sid / "B02.tif") as ds:
        native, native_transform, native_crs = ds.read(1), ds.transform, ds.crs
    # same grid as the source band: shape, transform, CRS
    assert data.shape == (1, 4, *native.shape) and classes.shape == (1, *native.shape)
    assert tuple(data.attrs["transform"])[:6] == tuple(native_transform)[:6]
    assert tuple(classes.attrs["transform"])[:6] == tuple(native_transform)[:6]
    assert str(data.attrs["crs"]).upper() == native_crs.to_string().upper()
    # the source pixels are the file's pixels, the mask pixels the 20 m mask's pixels (each on 2 x 2 cells)
    assert np.array_equal(data.sel(band="blue").values[0], native.astype("float64"))
    mask20, mask_transform = read_mask(masks20, sid)
    assert (mask_transform.c, mask_transform.f) == (native_transform.c, native_transform.f) and mask_transform.a == 20
    assert np.array_equal(classes.values[0], np.kron(mask20, np.ones((2, 2), dtype=np.uint8)))


def test_cloud_pixel_becomes_nan_clear_pixel_keeps_its_value(masks20, sample_catalog, sample_data_dir):
    cube = stack_masked(sources(sample_catalog, F), str(masks20 / "catalog.json")).compute()
    classes = cube["cloudmask"].values[0]
    assert {0, 1} <= set(np.unique(classes).tolist())
    with rasterio.open(sample_data_dir / F / "B04.tif") as ds:
        red = ds.read(1)
    cloud = np.argwhere(classes == 1)[len(np.argwhere(classes == 1)) // 2]
    clear = np.argwhere(classes == 0)[len(np.argwhere(classes == 0)) // 2]
    assert np.isnan(cube.sel(band="red").values[0][tuple(cloud)])
    assert cube.sel(band="red").values[0][tuple(clear)] == red[tuple(clear)]
    # everywhere: kept exactly where clear, NaN elsewhere (cloud, shadow, nodata)
    values = cube.sel(band="red").values[0]
    assert np.array_equal(np.isnan(values), classes != 0)
    assert np.array_equal(values[classes == 0], red[classes == 0].astype("float64"))
    # keeping shadow too
    both = (
        stack_masked(sources(sample_catalog, F), str(masks20 / "catalog.json"), keep=(0, 2)).sel(band="red").values[0]
    )
    assert np.array_equal(np.isnan(both), ~np.isin(classes, [0, 2]))


def test_native_10m_masks_and_several_items_on_one_grid(sample_catalog, tmp_path, sample_data_dir):
    out = tmp_path / "m10"
    assert invoke("run", str(sample_catalog), "--output", str(out), "--ids", F, "--resolution", "10").exit_code == 0
    [item] = sources(sample_catalog, F)
    # two "acquisitions" on the same grid: the item and a copy a day later with the same mask
    later = item.clone()
    later.id = f"{F}-later"
    later.datetime = later.datetime.replace(day=9)
    [mask] = find_masks([item], str(out / "catalog.json"))
    mask_later = {
        **mask,
        "id": mask["id"] + "-later",
        "properties": {**mask["properties"], "clouds2mask:source_item": later.id},
    }
    cube = stack_masked([later, item], [mask, mask_later])
    assert cube.sizes["time"] == 2 and list(cube["id"].values) == [F, f"{F}-later"]  # sorted by time
    mask10, _ = read_mask(out, F)
    assert np.array_equal(cube["cloudmask"].values[0], mask10) and np.array_equal(cube["cloudmask"].values[1], mask10)


def test_clear_errors(masks20, sample_catalog, tmp_path):
    with pytest.raises(ValueError, match="more than one CRS"):
        stack_masked(sources(sample_catalog, F, G), str(masks20 / "catalog.json"))
    with pytest.raises(ValueError, match="no published mask .* s2b-t32upc-20200406"):
        stack_masked(sources(sample_catalog, F, "s2b-t32upc-20200406-l1c-n0209-10x10"), str(masks20 / "catalog.json"))


def test_stack_command_writes_the_masked_cube(masks20, sample_catalog, tmp_path):
    import xarray as xr

    nc = tmp_path / "g.nc"
    result = invoke(
        "stack",
        str(sample_catalog),
        "--masks",
        str(masks20 / "catalog.json"),
        "--ids",
        G,
        "--assets",
        "red,nir",
        "-o",
        str(nc),
    )
    assert result.exit_code == 0, result.output
    ds = xr.open_dataset(nc)
    assert ds["masked"].shape == (1, 2, 512, 512) and list(ds["band"].values) == ["red", "nir"]
    assert np.array_equal(ds["masked"].isnull().values[0, 0], ds["cloudmask"].values[0] != 0)
    assert ds.attrs["crs"] == "EPSG:32737"
    bad = invoke("stack", str(sample_catalog), "--masks", str(masks20 / "catalog.json"), "--ids", f"{F},{G}")
    assert bad.exit_code == 2 and "more than one CRS" in " ".join(bad.output.split())


def test_masks_read_from_s3(masks20, sample_catalog, moto_s3, s3_bucket, s3fs_fs):
    """Masks published to object storage stack the same as local ones (stackstac reads through GDAL /vsis3/)."""
    from conftest import upload_tree

    upload_tree(s3fs_fs, masks20, f"{s3_bucket}/masks")
    local = stack_masked(sources(sample_catalog, F), str(masks20 / "catalog.json")).compute()
    remote = stack_masked(sources(sample_catalog, F), f"s3://{s3_bucket}/masks/catalog.json").compute()
    assert str(remote["mask_id"].values[0]) == f"{F}_cloudmask"
    assert np.array_equal(remote["cloudmask"].values, local["cloudmask"].values)
    assert np.array_equal(np.isnan(remote.values), np.isnan(local.values))


def test_unsigned_reads_end_with_their_stack(masks20, sample_catalog, moto_s3, s3_bucket, s3fs_fs):
    """anon=True acts on its own stack only: a later stack in the same process signs its requests again.
    (Entering stackstac's `open` rasterio.Env a second time for the warped VRT once left it active in the
    reader threads, so the next stack of a private bucket was sent unsigned and got 403.)"""
    from conftest import upload_tree

    from stac_clouds2mask.storage import StorageOptions

    upload_tree(s3fs_fs, masks20, f"{s3_bucket}/public")
    for path in s3fs_fs.find(f"{s3_bucket}/public"):
        s3fs_fs.chmod(path, "public-read")
    upload_tree(s3fs_fs, masks20, f"{s3_bucket}/private")
    public = f"s3://{s3_bucket}/public/catalog.json"
    with dask.config.set(scheduler="synchronous"):  # one reader thread: the second stack surely reuses it
        unsigned = stack_masked(sources(sample_catalog, F), public, options=StorageOptions(anon=True)).compute()
        signed = stack_masked(sources(sample_catalog, F), f"s3://{s3_bucket}/private/catalog.json").compute()
    assert np.array_equal(signed["cloudmask"].values, unsigned["cloudmask"].values)


def test_latest_of_many_versions_found_in_a_stac_api(masks20, sample_catalog, clean_stac_api):
    """A STAC API is asked for version 1, 2, ... of each source's mask until one is missing (the rule of
    publish.versions), so an 11th version is found: no fixed number of versions is assumed."""
    from stac_clouds2mask.publish.collections import new_collection
    from stac_clouds2mask.publish.versions import mask_item_id

    [item] = sources(sample_catalog, F)
    [v1] = find_masks([item], str(masks20 / "catalog.json"))
    v1["links"] = []
    copies = []
    for n in range(1, 12):
        d = json.loads(json.dumps(v1))
        d["id"] = mask_item_id(F, n)
        d["properties"].update({"version": str(n), "deprecated": n < 11})
        copies.append(d)
    clean_stac_api.create_collection({**new_collection(L2A, v1), "links": []})
    clean_stac_api.add_items(L2A, copies)
    [latest] = find_masks([item], clean_stac_api.url)
    assert latest["id"] == f"{F}_cloudmask_v11" and latest["properties"]["version"] == "11"
