"""Threshold alerts: rules file, the alert state machine, and webhook delivery (no Faust)."""
