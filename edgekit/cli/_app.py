"""The Typer application behind ``edgekit``: a group that imports each command when it is used."""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

from edgekit.cli.commands import COMMANDS, DESCRIPTION, HELP_SETTINGS

# Help as click writes it: readable at 80 columns (option names never cut, no placeholder on
# flags), and help texts are plain text, not rich markup.
MARKUP: Any = None


class _Commands(dict[str, Any]):
    """The group's commands by name, each loaded on first look-up."""

    def __missing__(self, name: str) -> Any:
        if name not in COMMANDS:
            raise KeyError(name)
        self[name] = command = _load(name)
        return command


class _LazyGroup(TyperGroup):
    """Lists the commands from ``COMMANDS`` and imports each one only when it is used."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _Commands(self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return self.commands[cmd_name] if cmd_name in COMMANDS else None

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [(name, summary) for name, (_, _, summary) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _load(cmd_name: str) -> Any:
    """The click command of ``cmd_name``, its module imported now."""
    module, attribute, _ = COMMANDS[cmd_name]
    target = getattr(importlib.import_module(module), attribute)
    wrapper = typer.Typer(rich_markup_mode=MARKUP, add_completion=False)
    if isinstance(target, typer.Typer):
        wrapper.add_typer(target, name=cmd_name, context_settings=HELP_SETTINGS)
        group: Any = typer.main.get_command(wrapper)
        return group.commands[cmd_name]
    wrapper.command(cmd_name, context_settings=HELP_SETTINGS)(target)
    return typer.main.get_command(wrapper)


def make_app() -> typer.Typer:
    """The ``edgekit`` command group."""
    app = typer.Typer(
        name="edgekit",
        cls=_LazyGroup,
        help=DESCRIPTION,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=MARKUP,
        context_settings=HELP_SETTINGS,
    )

    @app.callback()
    def _root() -> None:
        """The command group itself: every command is listed in ``COMMANDS``."""

    return app
