"""cityops: streaming city-operations data platform for Yuzhong district, Chongqing.

Data flows left to right: ``ingest`` → ``streams`` → ``warehouse`` → ``dashboards``, with
``deploy`` beside them and ``core`` (settings, feed models, site registry) shared by all.
A module imports only from its left and from ``core``; never back.
"""

from cityops.exceptions import CityopsError

__all__ = ["CityopsError", "__version__"]
__version__ = "0.1.0"
