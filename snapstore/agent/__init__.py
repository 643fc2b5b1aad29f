"""Agent workflows: the config file, schedules, watch, history, latest-good, tar interop."""
