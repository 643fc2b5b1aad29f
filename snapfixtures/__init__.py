"""Test and demo fixtures (sample agent workspaces, the demo); not part of the runtime package."""
