"""`stac-clouds2mask stack`: source bands with their published masks applied, as one aligned cube."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .display import console, guarded, markup
from .options import Anon, Datetime, EndpointUrl, Ids, Sources, id_list, search_filters, storage_options

# NetCDF 3 (scipy's writer) has no 64-bit integers, in which xarray encodes times with fractions of a second
# (Earth Search's datetimes have milliseconds): float64 milliseconds keep them to the microsecond
TIME_ENCODING = {"time": {"units": "milliseconds since 1970-01-01", "dtype": "float64"}}


def stack(
    sources: Sources,
    masks: Annotated[
        str,
        typer.Option(
            "--masks",
            "-m",
            metavar="MASKS",
            help="Where their masks were published: the output catalog.json of `run` (any fsspec URL) or a STAC API "
            "root URL.",
        ),
    ],
    assets: Annotated[
        str, typer.Option(metavar="BANDS", help="Comma-separated source bands (asset keys or common names).")
    ] = "blue,green,red,nir",
    ids: Ids = None,
    bbox: Annotated[
        Optional[tuple[float, float, float, float]],
        typer.Option(metavar="W S E N", help="Only source items intersecting this box (WGS84)."),
    ] = None,
    datetime: Datetime = None,
    collection: Annotated[
        Optional[list[str]], typer.Option("--collection", "-c", metavar="ID", help="Source collection(s).")
    ] = None,
    keep: Annotated[
        str,
        typer.Option(
            metavar="CLASSES",
            help="Mask classes whose pixels keep their values (0 clear, 1 cloud, 2 shadow); the rest become NaN.",
        ),
    ] = "0",
    resolution: Annotated[
        Optional[float],
        typer.Option(metavar="METRES", help="Grid resolution (default: the finest native resolution of the bands)."),
    ] = None,
    epsg: Annotated[
        Optional[int],
        typer.Option(
            metavar="CODE",
            help="Grid CRS (default: the masks' CRS; needed when they differ). Items wholly outside the grid are left "
            "out.",
        ),
    ] = None,
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output",
            "-o",
            metavar="FILE.nc",
            help="Write the masked cube (float32, NaN masked) and the classes as NetCDF.",
        ),
    ] = None,
    anon: Anon = None,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Load the SOURCES' bands with stackstac together with their published masks, on one grid, and set
    cloud, cloud-shadow and nodata pixels to NaN.

    [bold]Example[/]

      stac-clouds2mask stack ../shared/data/catalog.json --masks ./masks/catalog.json \
--ids ccd-s2-l2a-20200908-epsg32636-512-labelled -o f.nc

    Python: stac_clouds2mask.stack.stack_masked(items, "./masks/catalog.json")
    """

    def body() -> int:
        from stac_clouds2mask import Clouds2MaskError, InvalidInputError, search_all, stack_masked

        options = storage_options(anon, False, endpoint_url)
        filters = search_filters(options, bbox=bbox, datetime=datetime, ids=id_list(ids), collection=collection)
        items = search_all(sources, filters, options)
        band_list = [b.strip() for b in assets.split(",") if b.strip()]
        refused = (ValueError, RuntimeError, Clouds2MaskError)  # a refused href or file, a limit: one line, exit 2
        try:
            keep_classes = tuple(int(k) for k in keep.split(",") if k.strip())
            cube = stack_masked(
                items, masks, band_list, keep=keep_classes, resolution=resolution, epsg=epsg, options=options
            )
            classes = cube["cloudmask"].compute()
        except refused as exc:
            raise InvalidInputError(str(exc)) from exc
        table = Table(
            "time",
            "source item",
            "mask item",
            "kept %",
            "cloud %",
            "shadow %",
            "nodata %",
            title=f"{cube.sizes['time']} x {cube.sizes['band']} bands x {cube.sizes['y']} x {cube.sizes['x']} "
            f"({markup(str(cube.attrs.get('crs')).upper())}, {cube.attrs.get('resolution')} m)",
        )
        for i in range(cube.sizes["time"]):
            c = classes.isel(time=i).values
            n = c.size

            def pct(mask) -> str:
                return f"{100.0 * mask.sum() / n:.2f}"

            table.add_row(
                str(classes["time"].values[i])[:19],
                markup(classes["id"].values[i]),
                markup(classes["mask_id"].values[i]),
                pct(sum(c == k for k in keep_classes)),
                pct(c == 1),
                pct(c == 2),
                pct(c == 255),
            )
        Console().print(table)
        if output:
            import xarray as xr

            ds = xr.Dataset(
                {
                    "masked": (("time", "band", "y", "x"), cube.data.astype("float32")),
                    "cloudmask": (
                        ("time", "y", "x"),
                        classes.values.astype("int16"),
                        {"flag_values": "0 1 2 255", "flag_meanings": "clear cloud cloud_shadow nodata"},
                    ),
                },
                coords={
                    "time": cube["time"].values,
                    "band": [str(b) for b in cube["band"].values],
                    "y": cube["y"].values,
                    "x": cube["x"].values,
                    "id": ("time", [str(v) for v in classes["id"].values]),
                },
                attrs={
                    "crs": str(cube.attrs.get("crs")).upper(),
                    "transform": list(cube.attrs["transform"])[:6],
                    "resolution": float(cube.attrs.get("resolution", 0)),
                    "source": "stac-clouds2mask stack",
                    "kept_classes": list(keep_classes),
                },
            )
            partial = f"{output}.partial"
            try:  # the source bands are read here: a refused file leaves no output behind
                ds.to_netcdf(partial, encoding=TIME_ENCODING)
                os.replace(partial, output)
            except refused as exc:
                raise InvalidInputError(str(exc)) from exc
            finally:
                if os.path.exists(partial):
                    os.remove(partial)
            console.print(f"wrote {markup(output)}")
        return 0

    guarded(body)
