"""Stage 4: publish masks as COGs plus STAC items, into a static catalog (any fsspec URL) and/or a STAC API.

One module per concern:
- publisher.py: Publisher (what to do with a source's mask, and the order of writes) and PublishPlan;
- versions.py: the mask-version rule (ids, provenance match, latest, predecessor, deprecation), the
  one place the publisher, the batch status and the stack decide versions;
- static.py: StaticCatalog, the static catalog (items, assets, claims, links safe for parallel writers);
- api.py: StacApi, a STAC API with the Transactions extension;
- documents.py: item JSON copies and absolute asset hrefs shared by the targets.
"""

from . import versions
from .api import StacApi
from .publisher import Publisher, PublishPlan
from .items import statistics
from .static import StaticCatalog
from .thumbnail import overlay_preview, published_thumbnail
from .versions import VERSION_RELS

__all__ = [
    "VERSION_RELS",
    "PublishPlan",
    "Publisher",
    "StacApi",
    "StaticCatalog",
    "overlay_preview",
    "published_thumbnail",
    "statistics",
    "versions",
]
