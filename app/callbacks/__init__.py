"""Platform event callbacks (`/callbacks/<platform>/<corp>`): verify, store, answer — apply later."""
