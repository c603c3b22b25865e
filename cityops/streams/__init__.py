"""streams area of the data flow."""
