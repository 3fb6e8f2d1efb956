"""Property tests (Hypothesis) for the input parsers and the patch planner."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stac_clouds2mask.errors import InvalidInputError
from stac_clouds2mask.infer import plan_patches
from stac_clouds2mask.search import geometry_from_geojson, parse_bbox, parse_datetime_interval

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


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 700), st.integers(1, 700), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_planner_covers_all_valid_pixels_with_no_empty_patch(h, w, seed, density):
    rng = np.random.default_rng(seed)
    # blobs of valid pixels: coarse random field upsampled, so runs of nodata span whole patches
    coarse = rng.random((h // 97 + 2, w // 97 + 2)) < density
    valid = np.kron(coarse, np.ones((97, 97), bool))[:h, :w]
    plan = plan_patches(valid)
    covered = np.zeros_like(valid)
    for y0, x0 in plan.origins():
        window = (slice(max(y0, 0), y0 + plan.patch_h), slice(max(x0, 0), x0 + plan.patch_w))
        assert valid[window].any()
        covered[window] = True
    assert covered[valid].all()
    assert plan.patch_h % 32 == 0 and plan.patch_w % 32 == 0
    assert plan_patches(valid).rows == plan.rows
