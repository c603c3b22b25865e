"""warehouse area of the data flow: ClickHouse schema, backends, migrations, analyst tools.

``connect(url)`` opens the warehouse (embedded chdb or a ClickHouse server); ``rows`` maps
feed events and stream records to table rows; ``migrate`` applies the versioned schema.
"""

from cityops.warehouse.backend import Warehouse, connect, connect_settings
from cityops.warehouse.exceptions import WarehouseError

__all__ = ["Warehouse", "WarehouseError", "connect", "connect_settings"]
