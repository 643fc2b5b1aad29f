"""snapstore: a content-addressed snapshot store for AI-agent state.

The package root stays empty on purpose: importing ``snapstore`` must cost nothing, so that
short commands (``snap list``, ``snap cat``) start fast. Import the module you need.
"""

__version__ = "0.1.0"
