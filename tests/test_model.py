"""The native torch port of the ukis-csmask models against the shipped ONNX graphs (real weights, real data).

onnxruntime and onnx are test-only dependencies: onnxruntime runs the reference graph, onnx reads the graphs
the package's own weights reader (model/onnx_file.py) is checked against; neither is used by the product.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from stac_clouds2mask.model import (
    build_model,
    choose_model,
    fold_batchnorm,
    get_model_spec,
    list_models,
    load_model,
)
from stac_clouds2mask.model import weights as weights_mod
from stac_clouds2mask.model.onnx_file import initializers
from stac_clouds2mask.model.registry import MODEL_NAMES
from stac_clouds2mask.model.unet import PaddedConv2d

CROP_B_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")


def shared_data() -> Path:
    env = os.environ.get("STAC_CLOUDS2MASK_SHARED")
    return (Path(env) if env else Path(__file__).resolve().parents[2] / "shared") / "data"


def read_bands(crop: str, bands: tuple[str, ...]) -> np.ndarray:
    """(C, H, W) float32 reflectance, DN * 0.0001 (the crops used here have no DN offset)."""
    import rasterio

    arrays = []
    for band in bands:
        with rasterio.open(shared_data() / crop / f"{band}.tif") as src:
            arrays.append(src.read(1))
    return np.stack(arrays).astype(np.float32) * np.float32(1e-4)


def normalise(x: np.ndarray, spec) -> np.ndarray:
    mean = np.asarray(spec.mean, np.float32)[:, None, None]
    std = np.asarray(spec.std, np.float32)[:, None, None]
    return ((x - mean) / std).astype(np.float32)


@pytest.fixture(scope="module")
def spec6():
    return get_model_spec("model_6b_l1c")


@pytest.fixture(scope="module")
def model6(spec6):
    return load_model(spec6)


@pytest.fixture(scope="module")
def crop_b_tiles(spec6) -> np.ndarray:
    """Three normalised 256x256 tiles of crop B (corners and an off-grid window)."""
    x = normalise(read_bands("ukis-csmask-s2-l1c-512-labelled", CROP_B_BANDS), spec6)
    return np.ascontiguousarray(np.stack([x[:, :256, :256], x[:, 256:, 256:], x[:, 100:356, 200:456]]))


def test_logits_match_onnxruntime(spec6, model6, crop_b_tiles):
    import onnxruntime as ort

    session = ort.InferenceSession(str(spec6.onnx_path), providers=["CPUExecutionProvider"])
    ref = session.run(None, {session.get_inputs()[0].name: crop_b_tiles})[0]
    with torch.inference_mode():
        out = model6(torch.from_numpy(crop_b_tiles)).numpy()
    assert out.shape == ref.shape == (3, 3, 256, 256)
    diff = float(np.abs(out - ref).max())
    agreement = float((out.argmax(1) == ref.argmax(1)).mean())
    print(f"\nmax |logit diff| vs onnxruntime (fp16 graph): {diff:.4f}; argmax agreement {agreement:.5%}")
    # The shipped graph computes in float16, the port in float32: differences of a few 1e-2 are rounding.
    assert diff < 0.1
    assert agreement >= 0.999


def test_encoder_pads_are_the_graphs(spec6, model6):
    """The static "same" pads of every padded conv equal the Pad nodes' constants in the ONNX graph."""
    graph = onnx.load(str(spec6.onnx_path)).graph
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"}
    graph_pads = {}
    for node in graph.node:
        if node.op_type == "Cast" and node.name.endswith("/static_padding/Cast"):
            owner = node.name.removeprefix("/model/").removesuffix("/static_padding/Cast").replace("/", ".")
            graph_pads[owner] = tuple(int(v) for v in consts[node.input[0]])
    module_pads = {}
    for name, mod in model6.named_modules():
        if isinstance(mod, PaddedConv2d):
            module_pads[name] = mod.static_pads or (mod.padding[1], mod.padding[1], mod.padding[0], mod.padding[0])
    assert len(graph_pads) == 33
    assert module_pads == graph_pads
    assert graph_pads["encoder._conv_stem"] == (0, 1, 0, 1)  # the asymmetric pitfall is present


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_loads_strictly(name):
    spec = get_model_spec(name)
    onnx_state = weights_mod.state_dict_from_onnx(spec.onnx_path)
    module_keys = set(build_model(spec).state_dict())
    assert set(onnx_state) == module_keys  # every initializer used, every parameter filled
    model = load_model(spec)
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, onnx_state[key].float()), key
    with torch.inference_mode():
        out = model(torch.zeros(1, len(spec.bands), 64, 96))
    assert out.shape == (1, 3, 64, 96)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_weights_reader_reads_what_onnx_reads(name):
    """model/onnx_file.py against the onnx package on every shipped file: same names, order, dtypes, values."""
    path = get_model_spec(name).onnx_path
    ours = initializers(path)
    theirs = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    assert list(ours) == list(theirs) and len(ours) == 655
    for key, array in theirs.items():
        assert ours[key].dtype == array.dtype and ours[key].shape == array.shape, key
        assert np.array_equal(ours[key], array), key
        assert ours[key].flags.writeable  # torch.from_numpy takes it without a warning


def test_weights_reader_reads_dims_of_every_encoding_and_refuses_what_it_does_not_read(tmp_path):
    """A small graph written by onnx: float32 and int64 raw data, a scalar; then tensors held as typed
    values or in an external file, refused by name."""
    from onnx import TensorProto, helper

    weight = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    shape = np.array([3, -1], dtype=np.int64)
    scalar = np.array(2.5, dtype=np.float16)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(a, n) for a, n in ((weight, "w"), (shape, "shape"), (scalar, "s"))],
    )
    good = tmp_path / "good.onnx"
    onnx.save(helper.make_model(graph), str(good))
    read = initializers(good)
    assert list(read) == ["w", "shape", "s"]
    for got, want in zip(read.values(), (weight, shape, scalar)):
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)

    # dims packed, as a proto3 writer puts them (onnx itself writes them one by one): encoded here by hand
    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2]) + bytes([len(payload)]) + payload

    packed = np.arange(6, dtype=np.float32)
    tensor = field(1, bytes([2, 3])) + bytes([2 << 3, 1]) + field(8, b"p") + field(9, packed.tobytes())
    (tmp_path / "packed.onnx").write_bytes(field(7, field(5, tensor)))
    assert np.array_equal(initializers(tmp_path / "packed.onnx")["p"], packed.reshape(2, 3))

    typed = helper.make_tensor("typed", TensorProto.FLOAT, [2], [1.0, 2.0])  # float_data, not raw_data
    graph.initializer.append(typed)
    bad = tmp_path / "typed.onnx"
    onnx.save(helper.make_model(graph), str(bad))
    with pytest.raises(ValueError, match=r"typed.onnx .*initializer 'typed' is not stored as raw data"):
        initializers(bad)
    external = tmp_path / "external.onnx"
    onnx.save(helper.make_model(graph), str(external), save_as_external_data=True, size_threshold=0)
    with pytest.raises(ValueError, match="is not stored as raw data"):
        initializers(external)
    (tmp_path / "cut.onnx").write_bytes(good.read_bytes()[:-7])
    with pytest.raises(ValueError, match="cut.onnx is not an ONNX model whose weights can be read here"):
        initializers(tmp_path / "cut.onnx")


def test_any_multiple_of_32_and_rejects_others(model6):
    with torch.inference_mode():
        assert model6(torch.zeros(2, 6, 96, 32)).shape == (2, 3, 96, 32)
        with pytest.raises(ValueError, match="multiple of 32"):
            model6(torch.zeros(1, 6, 100, 96))


def test_weight_cache_roundtrip(tmp_path, monkeypatch, spec6):
    monkeypatch.setenv(weights_mod.CACHE_ENV, str(tmp_path))
    first = weights_mod.load_state_dict(spec6)
    path = weights_mod.cache_path(spec6)
    assert path.parent == tmp_path and path.is_file()
    assert not list(tmp_path.glob("*.tmp"))
    assert all(v.dtype == torch.float16 for v in first.values())
    cached = torch.load(path, weights_only=True)
    assert cached.keys() == first.keys()
    assert all(torch.equal(cached[k], first[k]) for k in first)
    path.write_bytes(b"truncated")  # a broken cache is rebuilt, not fatal
    rebuilt = weights_mod.load_state_dict(spec6)
    assert all(torch.equal(rebuilt[k], first[k]) for k in first)


def test_fold_batchnorm_same_logits(spec6, model6, crop_b_tiles):
    folded = fold_batchnorm(load_model(spec6))
    x = torch.from_numpy(crop_b_tiles[:1, :, :128, :128].copy())
    with torch.inference_mode():
        assert torch.allclose(folded(x), model6(x), atol=1e-3)


def test_specs_read_from_sidecars():
    specs = {s.name: s for s in list_models()}
    assert list(specs) == list(MODEL_NAMES)
    six = specs["model_6b_l1c"]
    assert six.bands == ("blue", "green", "red", "nir", "swir16", "swir22")
    assert six.level == "L1C" and six.version == "1.0.0-6BL1C"
    assert six.mean[0] == pytest.approx(0.275523, abs=1e-6) and six.std[5] == pytest.approx(0.126042, abs=1e-6)
    assert specs["model_4b_l1c"].mean == six.mean[:4]
    assert specs["model_4b_l2a"].level == "L2A" and len(specs["model_4b_l2a"].bands) == 4
    assert specs["model_6b_l2a"].mean != six.mean
    assert all(s.classes == ("clear", "cloud", "cloud shadow") for s in specs.values())


def test_choose_model():
    six = ["blue", "green", "red", "nir", "swir16", "swir22"]
    assert choose_model("L1C", six).name == "model_6b_l1c"
    assert choose_model("l2a", six + ["coastal"]).name == "model_6b_l2a"
    assert choose_model("L1C", ["red", "green", "blue", "nir", "swir16"]).name == "model_4b_l1c"
    assert choose_model("L2A", six[:4]).name == "model_4b_l2a"
    with pytest.raises(ValueError, match="missing: nir"):
        choose_model("L1C", ["blue", "green", "red", "swir16", "swir22"])
    with pytest.raises(ValueError, match="L1C"):
        choose_model("L3", six)


def test_get_model_spec_unknown_name():
    with pytest.raises(ValueError, match="model_6b_l1c"):
        get_model_spec("model_5b_l1c")
