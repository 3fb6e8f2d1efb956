"""Errors that name what failed, so a batch can report per item and carry on."""

from __future__ import annotations

from collections.abc import Sequence


class Clouds2MaskError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(Clouds2MaskError):
    """Bad invocation: a filter, URL or option that cannot be used as given (exit status 2)."""


class OptionError(InvalidInputError, ValueError):
    """A setting that cannot be used as given. `field` is its Python name (a RunConfig, SearchFilters or
    StorageOptions field, also the payload parameter's), so each entry point can name it its own way: the
    message names the field, the command line shows its flag instead."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}{'' if reason.startswith(':') else ' '}{reason}")


class ConfigurationError(InvalidInputError):
    """The environment cannot run what was asked (no CUDA, a publish target without Transactions)."""


class EmptySearchError(InvalidInputError):
    """The sources and filters match no item, or not every id asked for (exit status 3): a typo in an id or
    collection, or no data yet.

    `sources`, `conditions` ((field, value as text) of each filter) and `missing` (the ids asked for and not
    found, when some were found) let the command line name its flags."""

    def __init__(self, sources: Sequence[str], conditions: Sequence[tuple[str, str]], missing: Sequence[str] = ()):
        self.sources = tuple(sources)
        self.conditions = tuple(conditions)
        self.missing = tuple(missing)
        super().__init__(self.told(", ".join(f"{field}={value}" for field, value in conditions), "ids"))

    def told(self, shown: str, ids: str) -> str:
        """The message with the filters `shown` as the caller names them (`ids`: its name for the ids filter)."""
        where = f"in {', '.join(self.sources)} for {shown or 'no filter'}"
        if not self.missing:
            return f"no item found {where}"
        asked = next((len(set(v.split(","))) for f, v in self.conditions if f == "ids"), len(self.missing))
        return (
            f"{len(self.missing)} of the {asked} {ids} not found {where}: "
            f"{', '.join(repr(i) for i in self.missing)}; nothing was run"
        )


class UntrustedReferenceError(Clouds2MaskError):
    """A reference (href, link, output root, id) that its source may not make the tool open or write."""


class LimitExceededError(Clouds2MaskError):
    """Input beyond a configured limit (grid size, time, traversal, response size)."""


class ItemError(Clouds2MaskError):
    """One source item cannot be processed; names the item, the asset (if any) and why.

    `href`: the asset's file, where it applies (the run report fills it from the asset key when not given).
    """

    def __init__(
        self, item_id: str, reason: str, asset: str | None = None, stage: str | None = None, href: str | None = None
    ):
        self.item_id = item_id
        self.asset = asset
        self.reason = reason
        self.stage = stage
        self.href = href
        where = f"item {item_id!r}" + (f", asset {asset!r}" if asset else "")
        super().__init__(f"{where}: {reason}")


class SourceDataError(ItemError):
    """The source item's metadata or files cannot be read onto the grid (missing, corrupt, no CRS)."""

    def __init__(
        self, item_id: str, reason: str, asset: str | None = None, stage: str | None = "read", href: str | None = None
    ):
        super().__init__(item_id, reason, asset, stage, href)


class ModelError(ItemError):
    """No embedded model fits the item (its level or bands)."""

    def __init__(
        self, item_id: str, reason: str, asset: str | None = None, stage: str | None = "model", href: str | None = None
    ):
        super().__init__(item_id, reason, asset, stage, href)


class PublishError(ItemError):
    """The mask or its item could not be written to the target."""

    def __init__(
        self,
        item_id: str,
        reason: str,
        asset: str | None = None,
        stage: str | None = "publish",
        href: str | None = None,
    ):
        super().__init__(item_id, reason, asset, stage, href)


class NothingToMask(Clouds2MaskError):
    """The item has nothing to mask for this run (its footprint or grid misses the AOI, or the AOI holds no
    valid pixel): the item is skipped with this reason, not failed."""

    def __init__(self, item_id: str, reason: str):
        self.item_id = item_id
        self.reason = reason
        super().__init__(f"item {item_id!r}: {reason}")
