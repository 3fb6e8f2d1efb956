"""A local stand-in for a SAS signer (the Planetary Computer's token service is unreachable here): it signs
an item in place by adding a query to every asset href, as `planetary_computer.sign_inplace` does.

Importable as `signing_standin:sign` (tests/ is on sys.path through conftest.py), the form `--modifier
MODULE:FUNCTION` takes."""

from __future__ import annotations

from typing import Any

SIGNATURE = "sv=2024-01-01&sig=SIGNED-standin-secret-4711"


def sign(item: Any) -> None:
    for asset in item.assets.values():
        asset.href = f"{asset.href}{'&' if '?' in asset.href else '?'}{SIGNATURE}"
