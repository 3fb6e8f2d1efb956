"""Search: filters on static sources, and the same filters against a real stac-fastapi-pgstac server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from typer.testing import CliRunner

from stac_clouds2mask.cli import app
from stac_clouds2mask.errors import EmptySearchError, InvalidInputError
from stac_clouds2mask.search import (
    SearchFilters,
    is_api,
    parse_bbox,
    parse_datetime_interval,
    search,
    search_all,
)

F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
G = "ccd-s2-l2a-20200403-epsg32737-512-labelled"
A = "s2a-t19udp-20170729-l1c-160m"
D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
E = "s2b-t32upc-20200406-l1c-n0209-10x10"


def ids(items):
    return [i.id for i in items]


def test_static_catalog_walk_finds_every_sample_item(sample_catalog):
    assert sorted(ids(search(str(sample_catalog)))) == sorted([A, D, E, F, G])


def test_static_filters(sample_catalog, tmp_path):
    cat = str(sample_catalog)
    assert ids(search(cat, SearchFilters(bbox=(35.0, 2.0, 36.0, 3.0)))) == [F]
    assert sorted(ids(search(cat, SearchFilters(datetime="2020-04-01/2020-12-31")))) == sorted([E, F, G])
    assert ids(search(cat, SearchFilters(datetime="2017-07-29"))) == [A]
    assert ids(search(cat, SearchFilters(datetime="../2018-01-01"))) == [A]
    assert ids(search(cat, SearchFilters(ids=(G, "nope")))) == [G]
    assert sorted(ids(search(cat, SearchFilters(max_cloud=2.0)))) == sorted([D, E])
    assert len(search(cat, SearchFilters(limit=2))) == 2
    assert ids(search(cat, SearchFilters(collections=("sentinel-2-l2a-samples",), datetime="2020-04-03"))) == [G]
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(
        json.dumps(
            {
                "type": "Feature",
                "properties": {},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[36.5, -1.8], [37.0, -1.8], [37.0, -1.5], [36.5, -1.5], [36.5, -1.8]]],
                },
            }
        )
    )
    assert ids(search(cat, SearchFilters(intersects=json.loads(aoi.read_text())))) == [G]


def test_item_collection_and_single_item_sources(shared_dir):
    real = (
        shared_dir
        / "data"
        / "items-real"
        / "earth-search-v1_sentinel-2-l1c_S2B_27VWK_20240206_0_L1C_search-response.json"
    )
    items = search(str(real))
    assert ids(items) == ["S2B_27VWK_20240206_0_L1C"]
    assert items[0].assets["blue"].href.startswith("s3://sentinel-s2-l1c/")
    single = shared_dir / "data" / F / f"{F}.json"
    [item] = search(str(single))
    assert item.id == F and item.get_self_href() == str(single)


@pytest.mark.parametrize("bbox", [(10, 50, 11), (10, 52, 11, 51), (10, 50, 11, 95), (float("nan"), 0, 1, 1)])
def test_bad_bbox_is_refused(bbox):
    with pytest.raises(InvalidInputError, match="bbox"):
        parse_bbox(bbox)


def test_antimeridian_bbox_is_accepted():
    assert parse_bbox((170, -10, -170, 10)) == (170.0, -10.0, -170.0, 10.0)


@pytest.mark.parametrize("text", ["2024-13-01", "2024-06-30/2024-06-01", "../..", "a/b/c"])
def test_bad_datetime_is_refused(text):
    with pytest.raises(InvalidInputError, match="datetime"):
        parse_datetime_interval(text)


def test_missing_source_names_it(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        search(str(tmp_path / "nothing.json"))


def test_source_kind_detection():
    assert is_api("https://earth-search.aws.element84.com/v1")
    assert not is_api("https://example.org/catalog.json")
    assert not is_api("s3://bucket/catalog.json")


def _seed(api, sample_data_dir: Path) -> None:
    for coll in ("sentinel-2-l1c-samples", "sentinel-2-l2a-samples"):
        c = json.loads((sample_data_dir / coll / "collection.json").read_text())
        c["links"] = []
        api.create_collection(c)
        items = []
        for link in json.loads((sample_data_dir / coll / "collection.json").read_text())["links"]:
            if link["rel"] == "item":
                d = json.loads((sample_data_dir / coll / link["href"]).resolve().read_text())
                d["links"] = []
                items.append(d)
        api.add_items(coll, items)


def test_api_search_by_bbox_and_datetime(clean_stac_api, sample_data_dir):
    _seed(clean_stac_api, sample_data_dir)
    url = clean_stac_api.url
    assert is_api(url)
    both = ("sentinel-2-l1c-samples", "sentinel-2-l2a-samples")
    assert ids(search(url, SearchFilters(collections=both, bbox=(35.0, 2.0, 36.0, 3.0)))) == [F]
    found = search(url, SearchFilters(collections=both, datetime="2020-01-01/2020-12-31"))
    assert sorted(ids(found)) == sorted([E, F, G])
    assert sorted(ids(search(url, SearchFilters(collections=both, max_cloud=2.0)))) == sorted([D, E])
    assert ids(search(url, SearchFilters(collections=both, ids=(G,)))) == [G]


def test_every_id_asked_for_and_not_found_is_named_and_nothing_runs(sample_catalog, tmp_path):
    cat = str(sample_catalog)
    with pytest.raises(EmptySearchError) as info:
        search_all([cat], SearchFilters(ids=(D, "typo", "typo2", "typo")))
    assert f"2 of the 3 --ids not found in {cat} for --ids {D},typo,typo2,typo: 'typo', 'typo2'" in str(info.value)
    assert sorted(ids(search_all([cat], SearchFilters(ids=(D, E))))) == sorted([D, E])
    assert len(search_all([cat], SearchFilters(ids=(D, E), limit=1))) == 1  # --limit left E out: not missing
    out = tmp_path / "masks"
    result = CliRunner().invoke(app, ["run", cat, "--ids", f"{D},typo", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 3, result.output
    assert "1 of the 2 --ids not found" in " ".join(result.output.split()) and "'typo'" in result.output
    assert not out.exists()
