"""Make docs/quicklook.png: real sample scenes next to the masks stac-clouds2mask makes of them.

Runs the Python API on ../shared/data/catalog.json (crops A and G), then draws RGB | mask with the
published legend colours. Usage: python examples/make_quicklook.py [--shared ../shared] [--out docs/quicklook.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw

from stac_clouds2mask import RunConfig, SearchFilters, run
from stac_clouds2mask.publish.legend import CLASSES

CROPS = ("s2a-t19udp-20170729-l1c-160m", "ccd-s2-l2a-20200403-epsg32737-512-labelled")
SIZE = 384


def rgb(folder: Path) -> Image.Image:
    """True-colour quicklook with a 2-98 % stretch."""
    bands = []
    for name in ("B04", "B03", "B02"):
        with rasterio.open(folder / f"{name}.tif") as ds:
            bands.append(ds.read(1).astype(np.float32))
    arr = np.stack(bands, axis=-1)
    valid = arr.min(axis=-1) > 0
    lo, hi = np.percentile(arr[valid], (2, 98))
    out = np.clip((arr - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
    out[~valid] = 0
    return Image.fromarray(out).resize((SIZE, SIZE), Image.Resampling.BILINEAR)


def colour(mask: np.ndarray) -> Image.Image:
    palette = np.zeros((256, 3), dtype=np.uint8)
    for c in CLASSES:
        palette[c["value"]] = [int(c["color_hint"][i : i + 2], 16) for i in (0, 2, 4)]
    return Image.fromarray(palette[mask]).resize((SIZE, SIZE), Image.Resampling.NEAREST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    repo = Path(__file__).resolve().parents[1]
    parser.add_argument("--shared", type=Path, default=repo.parent / "shared")
    parser.add_argument("--out", type=Path, default=repo / "docs" / "quicklook.png")
    args = parser.parse_args()
    data = args.shared / "data"
    with tempfile.TemporaryDirectory() as tmp:
        report = run(str(data / "catalog.json"), RunConfig(output=tmp, resolution=20), SearchFilters(ids=CROPS))
        assert report.exit_code == 0, [o.error for o in report.outcomes]
        panels = []
        for outcome in sorted(report.outcomes, key=lambda o: CROPS.index(o.source_id)):
            href = outcome.item.assets["cloudmask"].href
            with rasterio.open(href) as ds:
                mask = ds.read(1)
            panels.append((outcome.source_id, rgb(data / outcome.source_id), colour(mask), outcome.item.properties))
    legend_h, caption_h = 28, 22
    sheet = Image.new("RGB", (2 * SIZE + 30, len(panels) * (SIZE + caption_h + 10) + legend_h + 10), "white")
    draw = ImageDraw.Draw(sheet)
    y = 10
    for source_id, image, mask, props in panels:
        draw.text(
            (10, y),
            f"{source_id}: cloud {props['clouds2mask:cloud_percentage']:.1f} %, "
            f"shadow {props['clouds2mask:shadow_percentage']:.1f} %, valid "
            f"{props['clouds2mask:valid_percentage']:.1f} % "
            f"({props['mlm:name']}, {props['proj:transform'][0]:g} m grid)",
            fill="black",
        )
        sheet.paste(image, (10, y + caption_h))
        sheet.paste(mask, (SIZE + 20, y + caption_h))
        y += SIZE + caption_h + 10
    x = 10
    for c in CLASSES:
        hexcol = "#" + c["color_hint"]
        draw.rectangle((x, y + 4, x + 16, y + 20), fill=hexcol, outline="black")
        draw.text((x + 22, y + 6), f"{c['value']} {c['name']}", fill="black")
        x += 150
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
