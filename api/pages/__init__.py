"""Server-rendered pages: one shared Jinja2 Environment (autoescape on, undefined names fail)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

PAGES = Path(__file__).parent

ENV = Environment(
    loader=FileSystemLoader(PAGES),
    autoescape=select_autoescape(enabled_extensions=("html", "j2"), default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(name: str, **context: object) -> str:
    return ENV.get_template(name).render(**context)
