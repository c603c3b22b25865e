"""Boards and alert rules as code: Grafana provisioning, checks, push, the terminal board."""
