"""The commands of ``edgekit``, and the top-level help, written without importing any of them.

Add a command by adding it to ``COMMANDS``: its module is imported only when it runs (or its own
help is asked for), so ``edgekit --help`` loads neither Typer nor any command's dependencies.
"""

from __future__ import annotations

import shutil
import textwrap

# name -> (module, attribute, one-line summary); a Typer attribute is a command group.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "build": ("edgekit.cli.build", "build", "Convert a model for a device profile into a bundle."),
    "verify": ("edgekit.cli.verify", "verify", "Check a bundle's files and signature."),
    "run": ("edgekit.cli.run", "run", "Benchmark a bundle here: latency, accuracy, memory."),
    "daemon": ("edgekit.cli.daemon", "daemon", "Measure a bundle each interval, report over MQTT."),
    "demo": ("edgekit.cli.demo", "demo", "The whole loop on this machine, nothing to set up."),
    "keygen": ("edgekit.cli.keygen", "keygen", "Create a key pair to sign bundles with."),
    "example": ("edgekit.cli.example", "example", "Write a small trained model and its data."),
    "profiles": ("edgekit.cli.profiles", "app", "List and show device profiles."),
    "collect": ("edgekit.cli.collect", "collect", "Store what the boards report (MQTT or NATS)."),
    "report": ("edgekit.cli.report", "report", "Report on the fleet: HTML, Markdown, CSV, JSON."),
    "deploy": ("edgekit.cli.deploy", "deploy", "Roll a bundle out to boards in gated waves."),
    "rollouts": ("edgekit.cli.rollouts", "rollouts", "List rollouts and their gate figures."),
    "rollback": ("edgekit.cli.deploy", "rollback", "Send a rollout's boards back."),
    "serve-bundles": ("edgekit.cli.deploy", "serve_bundles", "Serve a bundle store over HTTP(S)."),
}
DESCRIPTION = (
    "Build per-device int8 model bundles (build), run and benchmark them on boards (run), "
    "collect what boards report (collect) and review it (report)."
)
HELP_SETTINGS = {"help_option_names": ["-h", "--help"]}


def top_help() -> str:
    """``edgekit --help``, laid out as click lays out a group's help, at the terminal's width."""
    width = max(40, min(shutil.get_terminal_size((80, 24)).columns, 80) - 2)
    name_width = max(len(name) for name in COMMANDS) + 2
    lines = ["Usage: edgekit [OPTIONS] COMMAND [ARGS]...", ""]
    lines += textwrap.wrap(DESCRIPTION, width, initial_indent="  ", subsequent_indent="  ")
    lines += ["", "Options:", "  -h, --help  Show this message and exit.", "", "Commands:"]
    for name, (_, _, summary) in COMMANDS.items():
        indent = " " * (2 + name_width)
        lines += textwrap.wrap(summary, width, initial_indent=f"  {name:<{name_width}}",
                               subsequent_indent=indent)  # fmt: skip
    return "\n".join(lines) + "\n"
