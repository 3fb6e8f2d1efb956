"""Search: filters on static sources, and the same filters against a real stac-fastapi-pgstac server."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from hostile_server import HostileServer, api_landing
from pystac_client import ItemSearch
from typer.testing import CliRunner

from stac_clouds2mask.cli import app

from stac_clouds2mask.errors import EmptySearchError, InvalidInputError
from stac_clouds2mask.search import (
    SearchFilters,
    is_api,
    load_geojson,
    normalise_datetime,
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
    assert len(search(cat, SearchFilters(max_items=2))) == 2
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


def test_api_search_by_bbox_and_datetime(clean_stac_api, sample_data_dir, sample_catalog):
    _seed(clean_stac_api, sample_data_dir)
    url = clean_stac_api.url
    assert is_api(url)
    both = ("sentinel-2-l1c-samples", "sentinel-2-l2a-samples")
    assert ids(search(url, SearchFilters(collections=both, bbox=(35.0, 2.0, 36.0, 3.0)))) == [F]
    found = search(url, SearchFilters(collections=both, datetime="2020-01-01/2020-12-31"))
    assert sorted(ids(found)) == sorted([E, F, G])
    assert sorted(ids(search(url, SearchFilters(collections=both, max_cloud=2.0)))) == sorted([D, E])
    assert ids(search(url, SearchFilters(collections=both, ids=(G,)))) == [G]
    for form, expected in DATETIME_FORMS:  # the API and a static catalog agree on every form
        api = sorted(ids(search(url, SearchFilters(collections=both, datetime=form))))
        assert api == sorted(expected) == sorted(ids(search(str(sample_catalog), SearchFilters(datetime=form)))), form
    assert len(search(url, SearchFilters(collections=both, max_items=3, limit=2))) == 3


# every form of datetime pystac-client accepts, with the sample catalog's items it selects
# (A 2017-07-29T15:35:57Z, G 2020-04-03T08:00:21Z, E 2020-04-06T10:15:59Z, F 2020-09-08T08:09:15Z, D 2022-06-15)
DATETIME_FORMS = [
    ("2017", [A]),
    ("2020-04", [E, G]),
    ("2020-04-03", [G]),
    ("2020-04-03T08:00:21Z", [G]),
    ("2020-04-03t08:00:21z", [G]),
    ("2020-04-03T08:00:21", [G]),  # no zone: UTC
    ("2020-04-03T10:00:21+02:00", [G]),
    ("2020-04-03T08:00:21.000Z", [G]),
    ("2020/2020-04", [E, G]),
    ("2020-04-04/2020-09", [E, F]),
    ("../2018", [A]),
    ("/2018", [A]),
    ("2021/..", [D]),
    ("2021/", [D]),
    ("2020-04-06T10:15:59.024Z/2020-04-06T10:15:59.024Z", [E]),
]


@pytest.mark.parametrize("form, expected", DATETIME_FORMS, ids=[f for f, _ in DATETIME_FORMS])
def test_every_datetime_form_pystac_client_accepts(sample_catalog, form, expected):
    """Static catalogs filter with pystac-client's own reading of the form (the interval an API is sent)."""
    assert sorted(ids(search(str(sample_catalog), SearchFilters(datetime=form)))) == sorted(expected)
    assert normalise_datetime(form) == ItemSearch("", datetime=form).get_parameters()["datetime"]


def test_datetime_bounds_of_the_short_forms():
    start, stop = parse_datetime_interval("2024-02")
    assert (start.isoformat(), stop.isoformat()) == ("2024-02-01T00:00:00+00:00", "2024-02-29T23:59:59+00:00")
    assert parse_datetime_interval("../2024")[0] is None and parse_datetime_interval("2024/..")[1] is None


def test_max_items_is_the_maximum_and_limit_the_page_size(sample_catalog):
    cat = str(sample_catalog)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(search(cat, SearchFilters(max_items=2))) == 2
        assert len(search(cat, SearchFilters(max_items=3, limit=1))) == 3  # a page size limits no static search
    with pytest.warns(FutureWarning, match=r"SearchFilters\(limit=2\) without max_items is read as max_items=2"):
        old = SearchFilters(limit=2)
    assert (old.max_items, old.limit) == (2, None) and len(search(cat, old)) == 2  # as before: no page size
    with pytest.raises(InvalidInputError, match="limit is the page size, at most 10000"):
        SearchFilters(max_items=20_000, limit=20_000)
    with pytest.raises(InvalidInputError, match="max_items must be at least 1"):
        SearchFilters(max_items=0)


def _api(items: list[dict]) -> HostileServer:
    server = HostileServer()
    server.routes["/"] = api_landing(server.url)
    server.routes["/search"] = json.dumps({"type": "FeatureCollection", "features": items, "links": []}).encode()
    return server


def test_api_is_asked_the_page_size_and_cut_at_the_maximum(sample_data_dir):
    """--limit is what the API is asked per page, --max-items what the search keeps; the API is sent the
    interval pystac-client makes of a short datetime form."""
    items = []
    for n in range(5):
        d = json.loads((sample_data_dir / F / f"{F}.json").read_text())
        d.update(id=f"x{n}", links=[])
        items.append(d)
    server = _api(items)
    try:
        found = search(server.url, SearchFilters(max_items=3, limit=2, datetime="2020-09", collections=("c", "d")))
        assert ids(found) == ["x0", "x1", "x2"]
        body = json.loads(server.requests[-1]["body"])
        assert body["limit"] == 2 and body["collections"] == ["c", "d"]
        assert body["datetime"] == "2020-09-01T00:00:00Z/2020-09-30T23:59:59Z"
    finally:
        server.stop()


def plan(*args: str, input: str | None = None):
    return CliRunner().invoke(app, ["plan", *args], catch_exceptions=False, input=input)


def planned(result) -> int:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])["items"]


AOI = {"type": "Polygon", "coordinates": [[[36.5, -1.8], [37.0, -1.8], [37.0, -1.5], [36.5, -1.5], [36.5, -1.8]]]}


def test_cli_search_options_as_stac_client_has_them(sample_catalog, tmp_path):
    """--collections with several ids (--collection too), --intersects as a file, inline GeoJSON or standard
    input, short datetime forms, --max-items and --limit: the items `plan` finds (it searches, never infers)."""
    cat = str(sample_catalog)
    out = ["-o", str(tmp_path / "plan"), "--masks", str(tmp_path / "masks"), "--overwrite"]
    both = "sentinel-2-l1c-samples,sentinel-2-l2a-samples"
    assert planned(plan(cat, *out, "--collections", both)) == 5
    assert planned(plan(cat, *out, "--collections", "sentinel-2-l1c-samples", "-c", "sentinel-2-l2a-samples")) == 5
    assert planned(plan(cat, *out, "--collection", "sentinel-2-l2a-samples")) == 2
    assert planned(plan(cat, *out, "--datetime", "2020-04")) == 2
    assert planned(plan(cat, *out, "--datetime", "../2018")) == 1
    (tmp_path / "aoi.json").write_text(json.dumps(AOI))
    assert planned(plan(cat, *out, "--intersects", str(tmp_path / "aoi.json"))) == 1
    assert planned(plan(cat, *out, "--intersects", json.dumps(AOI))) == 1
    assert planned(plan(cat, *out, "--intersects", "-", input=json.dumps(AOI))) == 1
    assert planned(plan(cat, *out, "--max-items", "3")) == 3
    assert planned(plan(cat, *out, "--max-items", "3", "--limit", "1")) == 3
    old = plan(cat, *out, "--limit", "2")
    assert planned(old) == 2
    assert "warning: --limit 2 without --max-items is read as --max-items 2" in " ".join(old.stderr.split())


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{not json", "intersects is not JSON"),
        ("[1, 2]", "intersects holds a JSON list"),
        ('{"type": "Polygon"}', "intersects is not a GeoJSON geometry"),
    ],
)
def test_inline_geojson_errors_name_the_field(text, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        SearchFilters(intersects=load_geojson(text))


def test_every_id_asked_for_and_not_found_is_named_and_nothing_runs(sample_catalog, tmp_path):
    cat = str(sample_catalog)
    with pytest.raises(EmptySearchError) as info:
        search_all([cat], SearchFilters(ids=(D, "typo", "typo2", "typo")))
    assert f"2 of the 3 ids not found in {cat} for ids={D},typo,typo2,typo: 'typo', 'typo2'" in str(info.value)
    assert sorted(ids(search_all([cat], SearchFilters(ids=(D, E))))) == sorted([D, E])
    assert len(search_all([cat], SearchFilters(ids=(D, E), max_items=1))) == 1  # --max-items left E out
    out = tmp_path / "masks"
    result = CliRunner().invoke(app, ["run", cat, "--ids", f"{D},typo", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 3, result.output
    assert "1 of the 2 --ids not found" in " ".join(result.output.split()) and "'typo'" in result.output
    assert not out.exists()
