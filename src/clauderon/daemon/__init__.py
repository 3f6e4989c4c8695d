"""The daemon: owns all state and serves the API every front end uses."""
