"""manage.py load_catalog [PATH]: load (or reload) the model catalog from a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from routing.services import DEFAULT_CATALOG_PATH, CatalogError, catalog_load


class Command(BaseCommand):
    help = (
        "Load providers, models and endpoints from a catalog file (default: the shipped "
        "routing/catalog/default_catalog.json). Idempotent; models and endpoints missing from "
        "the file are deactivated. Format: routing/catalog/FORMAT.md."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", nargs="?", default=str(DEFAULT_CATALOG_PATH), help="catalog JSON file")

    def handle(self, *args, **options) -> None:
        path = Path(options["path"])
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CommandError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: cannot read: {exc}") from None
        except json.JSONDecodeError as exc:
            raise CommandError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        try:
            result = catalog_load(data=data)
        except CatalogError as exc:
            raise CommandError(f"{path}: {exc}") from None
        if options["verbosity"] >= 1:
            self.stdout.write(result.summary())
