"""Shared core: settings, feed contracts, site registry, geodesy and time helpers."""
