"""How a setting is spelt as an environment variable: ``EDGEKIT_<NAME>``.

Only the spelling lives here; the CLI is the one layer that reads the environment.
"""

from __future__ import annotations

ENV_PREFIX = "EDGEKIT_"


def env_var(name: str) -> str:
    """The variable of setting ``name`` (``ca_file`` -> ``EDGEKIT_CA_FILE``)."""
    return ENV_PREFIX + name.upper()
