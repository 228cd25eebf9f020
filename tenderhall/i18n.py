"""Translations: English message ids in code and templates, Simplified Chinese shown first.

Catalogues are the `locale/<lang>/LC_MESSAGES/*.po` files of each package (one per area of a
package, e.g. evaluation's `pool.po` and `draws.po`), read with
Babel at start-up (no compile step). The language of a request is its `lang` cookie, else
the configured default.
"""

from __future__ import annotations

import contextvars
import gettext
import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from tenderhall.settings import REPO_ROOT

LANGUAGES = {"zh_CN": "简体中文", "en": "English"}
PACKAGES = ("tenderhall", "trading", "evaluation", "venue", "supervision")

current_language: contextvars.ContextVar[str] = contextvars.ContextVar("language", default="zh_CN")


def load_catalogues(root: Path = REPO_ROOT) -> dict[str, gettext.NullTranslations]:
    """One merged translation per language from every package's .po files."""
    catalogues: dict[str, gettext.NullTranslations] = {"en": gettext.NullTranslations()}
    for lang in LANGUAGES:
        if lang == "en":
            continue
        merged: Translations | None = None
        for package in PACKAGES:
            for po_path in sorted((root / package / "locale" / lang / "LC_MESSAGES").glob("*.po")):
                with po_path.open("rb") as fh:
                    catalog = read_po(fh, locale=lang)
                buffer = io.BytesIO()
                write_mo(buffer, catalog)
                buffer.seek(0)
                part = Translations(buffer)
                merged = part if merged is None else merged.merge(part)
        catalogues[lang] = merged or gettext.NullTranslations()
    return catalogues


class Translator:
    """gettext/ngettext bound to the request's language through a context variable."""

    def __init__(self, catalogues: dict[str, gettext.NullTranslations]) -> None:
        self.catalogues = catalogues

    def gettext(self, message: str) -> str:
        return self.catalogues.get(current_language.get(), self.catalogues["en"]).gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.catalogues.get(current_language.get(), self.catalogues["en"]).ngettext(singular, plural, n)
