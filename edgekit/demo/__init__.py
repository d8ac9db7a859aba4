"""``edgekit demo``: the whole loop on one machine, with nothing to set up.

Not part of the shared core: it orchestrates the converters, the runtime (simulated boards) and
the collector, which the core never imports.
"""

from edgekit.demo.loop import PROFILES, DemoResult, run_demo

__all__ = ["PROFILES", "DemoResult", "run_demo"]
