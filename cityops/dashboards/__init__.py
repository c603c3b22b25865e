"""dashboards area of the data flow."""
