"""Entry points: the Starlette app, the CLI, and the wiring of concrete backends per role."""
