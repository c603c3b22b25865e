"""The ``cityops`` command: one typer app; each area registers its own subcommands."""
