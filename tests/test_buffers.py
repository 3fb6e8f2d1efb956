"""Cloud and shadow buffers (buffers.py): the disk checked against an independent Euclidean distance transform,
the rule of who wins, and the buffers on a real labelled chip through `mask_array` (crop F at 10 m, the
pretrained 4-band L2A model): a 60 m buffer grows cloud by exactly the clear pixels within 6 px of the model's
cloud, a shadow buffer grows shadow alone, the probabilities are the unbuffered ones."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from scipy.ndimage import distance_transform_edt

from stac_clouds2mask.buffers import buffer_classes, dilate
from stac_clouds2mask.classes import CLEAR, CLOUD, NODATA, SHADOW

F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
BANDS = ("blue", "green", "red", "nir")


def within(source: np.ndarray, radius: float) -> np.ndarray:
    """The reference: pixels whose centre is within `radius` px of a source pixel's centre (scipy's EDT)."""
    return distance_transform_edt(~source) <= radius + 1e-9


@pytest.mark.parametrize("radius", [0, 0.5, 1, 1.5, 2.5, 3, 6, 7.3, 12])
def test_dilation_is_the_euclidean_disk(radius):
    rng = np.random.default_rng(int(radius * 10))
    source = rng.random((120, 170)) > 0.995
    source[0, 0] = source[-1, -1] = True  # sources on the edges too
    assert np.array_equal(dilate(source, radius), within(source, radius))


def test_a_buffer_claims_clear_pixels_only_and_cloud_wins_over_shadow():
    classes = np.full((40, 60), CLEAR, np.uint8)
    classes[10, 10] = CLOUD
    classes[10, 14] = SHADOW  # 4 px from the cloud: inside a 5 px cloud buffer
    classes[10, 20:23] = NODATA  # 10-12 px from the cloud
    classes[30, 40] = SHADOW
    classes[30, 44] = CLOUD  # 4 px from that shadow
    out = buffer_classes(classes, pixel_size=20, cloud_buffer=100, shadow_buffer=100)  # 5 px each

    assert out[10, 14] == SHADOW and out[30, 44] == CLOUD  # the model's own classes stay
    assert (out[10, 20:23] == NODATA).all()  # nodata is never overwritten
    assert out[10, 15] == CLOUD  # within 5 px of the cloud and of the shadow: cloud wins
    assert out[10, 19] == SHADOW  # 9 px from the cloud, 5 px from the shadow
    assert out[10, 23] == CLEAR  # buffers never grow from buffered pixels
    cloud, shadow = classes == CLOUD, classes == SHADOW
    expect = classes.copy()
    expect[within(cloud, 5) & (classes == CLEAR)] = CLOUD
    expect[within(shadow, 5) & (expect == CLEAR)] = SHADOW
    assert np.array_equal(out, expect)
    assert np.array_equal(buffer_classes(classes, 20), classes)  # no buffer, no change
    assert classes[10, 15] == CLEAR  # the input is not changed in place


def test_buffers_are_in_metres_of_the_grid():
    classes = np.full((30, 30), CLEAR, np.uint8)
    classes[15, 15] = CLOUD
    grown = {size: int((buffer_classes(classes, size, cloud_buffer=60) == CLOUD).sum()) for size in (10, 20, 60)}
    assert grown == {10: int(within(classes == CLOUD, 6).sum()), 20: 29, 60: 5}  # 6, 3 and 1 px
    with pytest.raises(ValueError, match="pixel size"):
        buffer_classes(classes, 0, cloud_buffer=60)


@pytest.fixture(scope="module")
def crop_f(sample_data_dir) -> np.ndarray:
    folder = sample_data_dir / F
    return np.stack([rasterio.open(folder / f"{b}.tif").read(1) for b in ("B02", "B03", "B04", "B08")]) * 1e-4


@pytest.fixture(scope="module")
def plain_f(crop_f):
    from stac_clouds2mask import mask_array

    return mask_array(crop_f, BANDS, level="L2A", device="cpu", precision="fp32", with_probabilities=True)


def test_a_60_m_cloud_buffer_on_crop_f_grows_cloud_by_the_expected_pixels(crop_f, plain_f):
    from stac_clouds2mask import mask_array

    buffered = mask_array(
        crop_f,
        BANDS,
        level="L2A",
        device="cpu",
        precision="fp32",
        with_probabilities=True,
        cloud_buffer=60,
        pixel_size=10,
    )
    before, after = plain_f.classes, buffered.classes
    expected = within(before == CLOUD, 6) & (before == CLEAR)
    assert (before == CLOUD).sum() > 1000 and expected.sum() > 500  # the chip has clouds with clear around them
    assert np.array_equal(after == CLOUD, (before == CLOUD) | expected)
    assert int((after == CLOUD).sum() - (before == CLOUD).sum()) == int(expected.sum())
    assert np.array_equal(after == SHADOW, before == SHADOW) and np.array_equal(after == NODATA, before == NODATA)
    assert np.array_equal(buffered.probabilities, plain_f.probabilities)  # probabilities stay unbuffered


def test_a_shadow_buffer_on_crop_f_grows_shadow_alone(crop_f, plain_f):
    from stac_clouds2mask import mask_array

    buffered = mask_array(crop_f, BANDS, level="L2A", device="cpu", precision="fp32", shadow_buffer=30, pixel_size=10)
    before, after = plain_f.classes, buffered.classes
    expected = within(before == SHADOW, 3) & (before == CLEAR)
    assert (before == SHADOW).sum() > 100 and expected.sum() > 100
    assert np.array_equal(after == SHADOW, (before == SHADOW) | expected)
    assert np.array_equal(after == CLOUD, before == CLOUD)


def test_mask_array_buffers_need_the_pixel_size(crop_f):
    from stac_clouds2mask import mask_array

    with pytest.raises(ValueError, match="give pixel_size"):
        mask_array(crop_f, BANDS, level="L2A", device="cpu", cloud_buffer=60)
    with pytest.raises(ValueError, match="between 0 and 2000 m"):
        mask_array(crop_f, BANDS, level="L2A", device="cpu", shadow_buffer=-1, pixel_size=10)
