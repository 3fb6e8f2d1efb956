"""Make docs/t29unu-mask.png, the README's first picture: a whole real tile beside the mask made of it.

Runs the Python API on the Level-2A product folder ../shared/data/safe/*.SAFE (tile 29UNU, only its 60 m
band files are present, so the grid is 60 m), then draws the product's own true-colour image (TCI) next
to the mask in the published legend colours, both at 1/3 of the 60 m grid (180 m pixels).
Usage: python examples/readme_figure.py [--shared ../shared] [--out docs/t29unu-mask.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw

from stac_clouds2mask import RunConfig, run
from stac_clouds2mask.publish.legend import CLASSES

SIZE = 610  # pixels per panel: the 1830 px 60 m grid shown at 180 m
PAD, CAPTION, LEGEND = 10, 22, 28


def true_colour(product: Path) -> Image.Image:
    """The product's own true-colour image (Sen2Cor's TCI at 60 m)."""
    [tci] = product.glob("GRANULE/*/IMG_DATA/R60m/*_TCI_60m.jp2")
    with rasterio.open(tci) as ds:
        rgb = np.moveaxis(ds.read(), 0, -1)
    return Image.fromarray(rgb).resize((SIZE, SIZE), Image.Resampling.BOX)


def coloured(mask: np.ndarray) -> Image.Image:
    """Classes in the legend colours of the published items."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for c in CLASSES:
        palette[c["value"]] = [int(c["color_hint"][i : i + 2], 16) for i in (0, 2, 4)]
    return Image.fromarray(palette[mask]).resize((SIZE, SIZE), Image.Resampling.NEAREST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    repo = Path(__file__).resolve().parents[1]
    parser.add_argument("--shared", type=Path, default=repo.parent / "shared")
    parser.add_argument("--out", type=Path, default=repo / "docs" / "t29unu-mask.png")
    args = parser.parse_args()
    [product] = (args.shared / "data" / "safe").glob("*.SAFE")
    with tempfile.TemporaryDirectory() as tmp:
        report = run(str(product), RunConfig(output=tmp, resolution=60))
        [outcome] = report.outcomes
        assert outcome.status == "published", outcome.error
        with rasterio.open(outcome.item.assets["cloudmask"].href) as ds:
            mask = ds.read(1)
        props = outcome.item.properties
    sheet = Image.new("RGB", (2 * SIZE + 3 * PAD, SIZE + CAPTION + LEGEND + 2 * PAD), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text(
        (PAD, PAD),
        f"{product.name[:-5]}: cloud {props['clouds2mask:cloud_percentage']:.1f} %, shadow "
        f"{props['clouds2mask:shadow_percentage']:.1f} % of the valid {props['clouds2mask:valid_percentage']:.1f} % "
        f"({props['mlm:name']}, 60 m grid)",
        fill="black",
    )
    sheet.paste(true_colour(product), (PAD, PAD + CAPTION))
    sheet.paste(coloured(mask), (SIZE + 2 * PAD, PAD + CAPTION))
    x, y = PAD, PAD + CAPTION + SIZE
    for c in CLASSES:
        draw.rectangle((x, y + 6, x + 16, y + 22), fill="#" + c["color_hint"], outline="black")
        draw.text((x + 22, y + 8), f"{c['value']} {c['name']}", fill="black")
        x += 150
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
