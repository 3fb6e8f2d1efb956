"""The model weights published beside the masks (the mlm model asset): written once per catalog, by
parallel writers too, with nothing left behind by them or by a writer killed mid-upload; or, with
--model-href, one published copy that every catalog points at, checked byte for byte against the weights
that run (a copy of another model of the very same size is refused)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from conftest import item_dict
from typer.testing import CliRunner

from stac_clouds2mask import task
from stac_clouds2mask.cli import app
from stac_clouds2mask.errors import InvalidInputError, PublishError
from stac_clouds2mask.model import get_model_spec
from stac_clouds2mask.publish import Publisher, StaticCatalog
from stac_clouds2mask.publish.cog import multihash_sha256
from stac_clouds2mask.storage import StorageOptions, get_fs, join, write_bytes_atomic

KILLED = "model_4b_l2a.onnx.tmp-123-abcdef"  # the temporary of a writer killed mid-upload


@pytest.fixture(params=["local", "s3"])
def catalog(request, tmp_path) -> StaticCatalog:
    if request.param == "local":
        return StaticCatalog(str(tmp_path / "masks"))
    bucket = request.getfixturevalue("s3_bucket")
    return StaticCatalog(f"s3://{bucket}/masks", StorageOptions())


def test_parallel_writers_leave_one_whole_model_file(catalog: StaticCatalog) -> None:
    spec = get_model_spec("model_4b_l2a")
    models = join(catalog.url, "models")
    fs, path = get_fs(models, catalog.options)
    fs.makedirs(path, exist_ok=True)
    write_bytes_atomic(join(models, KILLED), b"partial", catalog.options)
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            written = catalog.put_model(spec)
            assert written.size == spec.onnx_path.stat().st_size
        except BaseException as exc:  # noqa: BLE001 (collected for the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
    assert names == ["model_4b_l2a.onnx"]
    assert fs.cat_file(f"{path}/model_4b_l2a.onnx") == spec.onnx_path.read_bytes()


E = "s2b-t32upc-20200406-l1c-n0209-10x10"  # 13 bands, L1C: model_6b_l1c


def test_model_href_points_every_item_at_one_verified_copy(catalog: StaticCatalog) -> None:
    spec = get_model_spec("model_4b_l2a")
    shared = join(catalog.url.rsplit("/", 1)[0], "shared-models")
    fs, path = get_fs(shared, catalog.options)
    fs.makedirs(path, exist_ok=True)
    fs.put_file(str(spec.onnx_path), f"{path}/model_4b_l2a.onnx")
    publisher = Publisher(catalog, model_href=shared)
    written = publisher.model_file(spec, "source-1")
    assert written.href == join(shared, "model_4b_l2a.onnx")
    assert written.size == spec.onnx_path.stat().st_size
    assert written.checksum == multihash_sha256(spec.onnx_path)
    mfs, models = get_fs(join(catalog.url, "models"), catalog.options)
    assert not mfs.exists(models)  # no copy in the catalog


@pytest.mark.parametrize(
    "planted, reason",
    [
        ("model_4b_l1c", "is not a copy of the weights that run"),  # another model of the very same size
        (None, "no such file"),
    ],
)
def test_model_href_refuses_a_copy_that_is_not_the_weights_that_run(catalog, planted, reason) -> None:
    spec = get_model_spec("model_4b_l2a")
    other = get_model_spec("model_4b_l1c")
    assert other.onnx_path.stat().st_size == spec.onnx_path.stat().st_size  # only the checksum tells them apart
    shared = join(catalog.url.rsplit("/", 1)[0], "shared-models")
    fs, path = get_fs(shared, catalog.options)
    fs.makedirs(path, exist_ok=True)
    if planted:
        fs.put_file(str(get_model_spec(planted).onnx_path), f"{path}/model_4b_l2a.onnx")
    publisher = Publisher(catalog, model_href=shared)
    for source in ("source-1", "source-2"):  # checked once, every item of that model fails with the reason
        with pytest.raises(PublishError, match=reason) as err:
            publisher.model_file(spec, source)
        assert err.value.item_id == source and "--model-href" in str(err.value)


def test_model_href_from_the_command_line_reaches_the_published_item(sample_catalog, tmp_path, validate_stac):
    first, second = tmp_path / "first", tmp_path / "second"
    run = ("run", str(sample_catalog), "--ids", E)
    result = CliRunner().invoke(app, [*run, "-o", str(first)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        app, [*run, "-o", str(second), "--model-href", str(first / "models")], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert not (second / "models").exists()
    path = next(second.glob(f"*/{E}_cloudmask/{E}_cloudmask.json"))
    d = json.loads(path.read_text())
    validate_stac(d)
    model = d["assets"]["model"]
    assert model["href"] == str(first / "models" / "model_6b_l1c.onnx")  # absolute: outside this catalog
    assert model["file:checksum"] == multihash_sha256(Path(model["href"]))
    assert model["file:checksum"] == multihash_sha256(get_model_spec("model_6b_l1c").onnx_path)


def test_a_remote_payload_may_not_name_a_local_model_href(sample_data_dir, tmp_path):
    payload = {
        "type": "FeatureCollection",
        "features": [item_dict(sample_data_dir, E)],
        "process": [
            {
                "upload_options": {"path_template": "s3://masks-bucket/masks/${collection}/${id}"},
                "tasks": {"clouds2mask": {"model_href": str(tmp_path / "models")}},
            }
        ],
    }
    with pytest.raises(InvalidInputError, match="model_href .* is a local file named by the remote document"):
        task.parse_payload(payload, "s3://payloads-bucket/p.json")
