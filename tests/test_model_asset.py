"""The model weights published beside the masks (the mlm model asset): written once per catalog, by
parallel writers too, with nothing left behind by them or by a writer killed mid-upload."""

from __future__ import annotations

import threading

import pytest

from stac_clouds2mask.model import get_model_spec
from stac_clouds2mask.publish import StaticCatalog
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
