"""Property tests (Hypothesis) for the pure rules where one example hides the bug: the input parsers, grid
arithmetic, the patch planner, href resolution, datetime filters and ids."""

from __future__ import annotations

import datetime as dt
import glob
import json
import posixpath

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stac_clouds2mask.errors import InvalidInputError
from stac_clouds2mask.infer import PATCH_SIZES, PatchPlan, fitted_plan, plan_patches
from stac_clouds2mask.infer.plan import LATTICE, MORE_WORK, PHASE
from stac_clouds2mask.publish import StaticCatalog
from stac_clouds2mask.read import target_grid
from stac_clouds2mask.search import SearchFilters, geometry_from_geojson, parse_bbox, parse_datetime_interval, search
from stac_clouds2mask.storage import resolve_href as resolve
from stac_clouds2mask.trust import unsafe_segment

lon = st.floats(-180, 180, allow_nan=False)
lat = st.floats(-90, 90, allow_nan=False)
instants = st.datetimes(
    min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2090, 1, 1), timezones=st.just(dt.timezone.utc)
).map(lambda t: t.replace(microsecond=0))


@given(lon, lat, lon, lat)
def test_bbox_accepts_every_ordered_box_and_refuses_upside_down_ones(w, s, e, n):
    if s <= n:
        assert parse_bbox((w, s, e, n)) == (w, s, e, n)  # w > e: crosses the antimeridian, allowed
    else:
        with pytest.raises(InvalidInputError, match="south"):
            parse_bbox((w, s, e, n))


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=6))
def test_bbox_never_crashes(values):
    try:
        box = parse_bbox(values)
    except InvalidInputError:
        return
    assert len(box) == 4 and all(np.isfinite(box))


@given(instants, instants)
def test_datetime_interval_round_trips_or_is_refused(a, b):
    text = f"{a.isoformat().replace('+00:00', 'Z')}/{b.isoformat().replace('+00:00', 'Z')}"
    if a <= b:
        assert parse_datetime_interval(text) == (a, b)
    else:
        with pytest.raises(InvalidInputError, match="starts after it ends"):
            parse_datetime_interval(text)


@given(instants)
def test_open_intervals_and_dates(a):
    z = a.isoformat().replace("+00:00", "Z")
    assert parse_datetime_interval(f"{z}/..") == (a, None)
    assert parse_datetime_interval(f"../{z}") == (None, a)
    start, end = parse_datetime_interval(a.date().isoformat())
    assert start <= a <= end and (end - start) < dt.timedelta(days=1)


@given(st.text(max_size=40))
def test_datetime_parser_never_crashes(text):
    try:
        start, end = parse_datetime_interval(text)
    except InvalidInputError:
        return
    assert start is None or end is None or start <= end


@given(lon, lat, st.floats(1e-3, 10), st.floats(1e-3, 10))
def test_aoi_boxes_keep_their_bounds(x, y, dx, dy):
    ring = [[x, y], [x + dx, y], [x + dx, y + dy], [x, y + dy], [x, y]]
    geom = geometry_from_geojson(
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    )
    assert geom.bounds == pytest.approx((x, y, x + dx, y + dy))


@given(st.integers(0, 10), st.floats(0.01, 5))
def test_bow_tie_aoi_is_refused(x, size):
    ring = [[x, 0], [x + size, size], [x + size, 0], [x, size], [x, 0]]
    with pytest.raises(InvalidInputError, match="invalid"):
        geometry_from_geojson({"type": "Polygon", "coordinates": [ring]})


def blobs(h: int, w: int, seed: int, density: float, blob: int) -> np.ndarray:
    """Blobs of valid pixels: a coarse random field upsampled, so runs of nodata span whole patches."""
    coarse = np.random.default_rng(seed).random((h // blob + 2, w // blob + 2)) < density
    return np.kron(coarse, np.ones((blob, blob), bool))[:h, :w]


def assert_covers(plan: PatchPlan, valid: np.ndarray) -> None:
    """Every patch starts on the reference lattice, reaches less than 32 px past any scene edge (the margin
    that is mirrored) and holds a valid pixel, and every valid pixel is in a patch."""
    (h, w), covered = valid.shape, np.zeros_like(valid)
    for y0, x0 in plan.origins():
        assert (y0 - PHASE) % LATTICE == 0 and (x0 - PHASE) % LATTICE == 0
        assert y0 > -LATTICE and x0 > -LATTICE, (y0, x0)
        assert y0 + plan.patch_h < h + LATTICE and x0 + plan.patch_w < w + LATTICE, (y0, x0)
        window = (slice(max(y0, 0), y0 + plan.patch_h), slice(max(x0, 0), x0 + plan.patch_w))
        assert valid[window].any(), (y0, x0)
        covered[window] = True
    assert covered[valid].all()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 700), st.integers(1, 700), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_planner_covers_all_valid_pixels_with_no_empty_patch(h, w, seed, density):
    valid = blobs(h, w, seed, density, 97)
    plan = plan_patches(valid)
    assert_covers(plan, valid)
    assert plan.patch_h % 32 == 0 and plan.patch_w % 32 == 0
    assert plan_patches(valid).rows == plan.rows


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 1600), st.integers(1, 1600), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0), st.integers(1, 4))
def test_the_fitted_plan_covers_the_data_and_is_never_busier_than_a_square_one(h, w, seed, density, streams):
    """Fitted to a footprint and to the streams that run patches at once: patches on the lattice within the
    mirrored margin, every valid pixel in a patch, no patch without data, each side a candidate size (or
    the whole short axis), at most MORE_WORK times the fewest processed pixels of the square plans, and no
    square plan with fewer keeps the network busy less (rounds x patch area)."""
    valid = blobs(h, w, seed, density, 131)
    plan = fitted_plan(valid, streams=streams)
    assert_covers(plan, valid)
    for side, n in ((plan.patch_h, h), (plan.patch_w, w)):
        assert side in PATCH_SIZES or side < PATCH_SIZES[0] or side > n
    squares = [plan_patches(valid, s) for s in PATCH_SIZES]
    assert plan.processed_pixels <= MORE_WORK * min(p.processed_pixels for p in squares)
    busy = plan.rounds(streams) * plan.patch_h * plan.patch_w
    for rival in (p for p in squares if p.processed_pixels <= plan.processed_pixels):  # surely among the candidates
        assert rival.rounds(streams) * rival.patch_h * rival.patch_w >= busy


# ------------------------------------------------------------------------------------------
# grid arithmetic, patch plans, href resolution, datetime filters, ids
# ------------------------------------------------------------------------------------------

resolutions = st.sampled_from([10.0, 20.0, 30.0, 60.0]) | st.floats(0.5, 500, allow_nan=False)
corners = st.floats(-2e6, 2e6, allow_nan=False)


@given(corners, corners, st.floats(1e-3, 2e5), st.floats(1e-3, 2e5), resolutions)
def test_the_processing_grid_covers_the_extent_with_less_than_one_pixel_to_spare(left, top, width, height, res):
    """Origin at the top-left corner, pixel size `res`, and per axis ceil(extent / res) pixels: the grid covers
    the extent and reaches less than one pixel past it (up to the 1e-6 px the rounding forgives)."""
    right, bottom = left + width, top - height
    transform, w, h = target_grid((left, bottom, right, top), res)
    assert (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f) == (
        res,
        0.0,
        left,
        0.0,
        -res,
        top,
    )
    for n, extent in ((w, right - left), (h, top - bottom)):
        assert n >= 1 and n >= extent / res - 1e-6
        assert n - 1 < extent / res + 1e-6 or n == 1


@given(corners, corners, st.integers(1, 20000), st.integers(1, 20000), resolutions)
def test_an_extent_of_whole_pixels_gives_exactly_that_many(left, top, nx, ny, res):
    """Float noise in `left + n * res - left` never adds or drops a pixel."""
    _, w, h = target_grid((left, top - ny * res, left + nx * res, top), res)
    assert (w, h) == (nx, ny)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 900),
    st.integers(1, 900),
    st.integers(0, 2**32 - 1),
    st.floats(0.0, 1.0),
    st.integers(1, 200),
    st.sampled_from(PATCH_SIZES[:1] + (256, 288, 512, 768)),
    st.sampled_from((0, 32, 64, 96, 128)),
)
@example(300, 700, 0, 0.3, 100, 256, 64)  # blobs of 100 px: short runs of data end near the scene's edges
def test_patches_stay_within_the_mirrored_margin_on_the_lattice(h, w, seed, density, blob, patch, overlap):
    """Blobs of data of every size (runs that end near a scene edge included): every patch starts on the
    reference lattice, reaches less than 32 px past any scene edge (the margin that is mirrored), carries
    data, and together the patches cover every valid pixel."""
    valid = blobs(h, w, seed, density, blob)
    assert_covers(plan_patches(valid, patch, min(overlap, patch // 2)), valid)


segments = st.text(st.sampled_from("abcxyz019-_."), min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
hosts = st.sampled_from(["bucket", "my-bucket.s3.eu-central-1.amazonaws.com", "example.org:8443", "127.0.0.1:9000"])


@given(
    st.sampled_from(["s3", "https", "http"]),
    hosts,
    st.lists(segments, max_size=4),
    st.integers(0, 6),
    st.lists(segments, min_size=1, max_size=3),
    st.booleans(),
)
@example("s3", "bucket", ["a"], 2, ["c.json"], False)  # s3://bucket/a/b.json + ../../c.json
def test_relative_hrefs_resolve_within_the_bucket_or_host(scheme, host, folders, ups, tail, dot):
    """`../` climbs the folders of the document and stops at the bucket or host, never eating into it:
    s3://bucket/a/b.json + ../../c.json is s3://bucket/c.json."""
    base = f"{scheme}://{host}/" + "/".join([*folders, "item.json"])
    href = ("./" if dot else "") + "../" * ups + "/".join(tail)
    kept = folders[: max(len(folders) - ups, 0)]
    assert resolve(base, href) == f"{scheme}://{host}/" + "/".join([*kept, *tail])


@given(st.lists(segments, max_size=4), st.integers(0, 6), st.lists(segments, min_size=1, max_size=3))
def test_relative_hrefs_resolve_against_local_documents(folders, ups, tail):
    base = "/" + "/".join([*folders, "item.json"])
    kept = folders[: max(len(folders) - ups, 0)]
    assert resolve(base, "../" * ups + "/".join(tail)) == "/" + "/".join([*kept, *tail])


@given(
    st.sampled_from(["s3://bucket/a/item.json", "https://example.org/a/item.json", "/data/a/item.json"]),
    st.sampled_from(["s3://other/x.tif", "https://cdn.example.org/x.tif", "/elsewhere/x.tif"]),
)
def test_absolute_hrefs_are_kept_as_they_are(base, href):
    assert resolve(base, href) == href


def _at(*ymd: int) -> dt.datetime:
    return dt.datetime(*ymd, tzinfo=dt.timezone.utc)


def _stamp(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(instants, instants, st.booleans()), min_size=1, max_size=5),
    st.one_of(st.none(), instants),
    st.one_of(st.none(), instants),
)
@example(  # a range that straddles the interval's start, an instant before it
    spans=[(_at(2020, 1, 1), _at(2020, 3, 1), True), (_at(2019, 1, 1), _at(2019, 1, 1), False)],
    start=_at(2020, 2, 1),
    stop=None,
)
def test_a_datetime_filter_keeps_the_items_whose_time_meets_it(tmp_path_factory, spans, start, stop):
    """Items with an instant (`datetime`) or a range (`datetime: null`, start/end): a search with an interval
    keeps exactly the items whose time shares at least an instant with it (open ends reach forever)."""
    if start is None and stop is None or (start and stop and start > stop):
        return
    features, times = [], []
    for n, (a, b, is_range) in enumerate(spans):
        first, last = (min(a, b), max(a, b)) if is_range else (a, a)
        times.append((first, last))
        when = (
            {"datetime": None, "start_datetime": _stamp(first), "end_datetime": _stamp(last)}
            if is_range
            else {"datetime": _stamp(first)}
        )
        features.append(
            {"type": "Feature", "stac_version": "1.1.0", "id": f"i{n}", "geometry": None, "properties": when}
            | {"links": [], "assets": {}}
        )
    path = tmp_path_factory.mktemp("fc") / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    text = f"{_stamp(start) if start else '..'}/{_stamp(stop) if stop else '..'}"
    found = {i.id for i in search(str(path), SearchFilters(datetime=text))}
    lo, hi = (
        start or dt.datetime.min.replace(tzinfo=dt.timezone.utc),
        stop or dt.datetime.max.replace(tzinfo=dt.timezone.utc),
    )
    assert found == {f"i{n}" for n, (first, last) in enumerate(times) if max(first, lo) <= min(last, hi)}


odd = st.sampled_from(
    [".", "..", "/", "\\", "::", ":", "?", "#", "*", "[", "]", "{", "}", "\x00", "\n", "\x7f", "\x85", " ", "ü", "é"]
)
names = st.one_of(odd, st.lists(st.one_of(odd, st.text(max_size=5)), max_size=6).map("".join))


@given(names)
@example("..")
@example("a/../b")
def test_an_accepted_id_is_exactly_one_path_segment_under_the_root(name):
    """Whatever `unsafe_segment` accepts stays one folder or file name: joined under a root and normalised it
    is still that name (no separator, no '.', no '..'), and it holds nothing fsspec or GDAL read specially."""
    why = unsafe_segment(name)
    if why is not None:
        assert isinstance(why, str) and why
        return
    assert posixpath.normpath(f"/root/{name}") == f"/root/{name}"
    assert "\\" not in name and "::" not in name and not glob.has_magic(name)
    assert name == name.strip() and all(ord(c) >= 32 and not 127 <= ord(c) < 160 for c in name)
    assert len(name.encode("utf-8", "surrogatepass")) <= 200
    url = StaticCatalog("s3://bucket/masks").item_url("masks-collection", name)
    assert url == f"s3://bucket/masks/masks-collection/{name}/{name}.json"
