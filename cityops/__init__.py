"""cityops: streaming city-operations data platform for Yuzhong district, Chongqing.

Data flows left to right: ``ingest`` → ``streams`` → ``warehouse`` → ``dashboards``, with
``deploy`` beside them and ``core`` (settings, feed models, site registry) shared by all.
A module imports only from its left and from ``core``; never back.
"""

from cityops.compiled import install as _install_compiled
from cityops.exceptions import CityopsError

# before any hot module is imported: a stale or missing compiled build runs from source
_install_compiled()

__all__ = ["CityopsError", "__version__"]
__version__ = "0.1.0"
