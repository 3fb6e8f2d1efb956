"""Errors that name what failed, so a batch can report per item and carry on."""

from __future__ import annotations


class Clouds2MaskError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(Clouds2MaskError):
    """Bad invocation: a filter, URL or option that cannot be used as given (exit status 2)."""


class ConfigurationError(InvalidInputError):
    """The environment cannot run what was asked (no CUDA, a publish target without Transactions)."""


class EmptySearchError(InvalidInputError):
    """The sources and filters match no item, or not every id asked for (exit status 3): a typo in an id or
    collection, or no data yet."""


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
