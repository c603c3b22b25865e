"""warehouse area of the data flow."""
