"""rap-assets: a Dagster asset pipeline for rap-lyrics research.

``from rap_assets import RapSearch`` gives the search resource, usable without Dagster running.
"""

from rap_assets.search import RapSearch, SearchHit

__all__ = ["RapSearch", "SearchHit"]
__version__ = "0.1.0"
