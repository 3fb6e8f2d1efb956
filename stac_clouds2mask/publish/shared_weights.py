"""The model asset pointed at one published copy of the weights that the operator names (--model-href), instead
of a copy in every output catalog (40 MB per model per catalog).

The asset must stay honest: its checksum is that of the weights that ran. So the named copy is verified,
not taken on the operator's word: its size, then its sha2-256 over every byte, must equal those of the
ukis-csmask file the engine loads; a copy that differs (another model, version or a truncated upload)
fails the items with the URL and the reason. Verified once per model and publisher.
"""

from __future__ import annotations

from ..model.registry import ModelSpec
from ..storage import StorageOptions, absolute, get_fs, join
from .cog import multihash_sha256
from .items import WrittenFile


def model_url(base: str, spec: ModelSpec) -> str:
    """Where the copy of `spec`'s weights lies under `base` (a folder or URL prefix, e.g. a catalog's models/)."""
    return join(absolute(base), f"{spec.name}.onnx")


def shared_weights(spec: ModelSpec, base: str, options: StorageOptions | None = None) -> WrittenFile:
    """The published copy of `spec`'s weights under `base`, checked byte for byte against the weights that run;
    OSError naming the URL when it is missing or differs."""
    url = model_url(base, spec)
    size = spec.onnx_path.stat().st_size
    checksum = multihash_sha256(spec.onnx_path)
    fs, path = get_fs(url, options)
    try:
        found = fs.size(path)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{url}: no such file (the published copy of {spec.name}'s weights)") from exc
    same = found == size
    if same:
        with fs.open(path, "rb") as f:
            same = multihash_sha256(f) == checksum
    if not same:
        raise OSError(
            f"{url} is not a copy of the weights that run ({spec.onnx_path.name} of ukis-csmask 1.0.0, "
            f"{size} bytes, sha2-256 multihash {checksum}): refused as the model asset"
        )
    return WrittenFile(url, size, checksum)
