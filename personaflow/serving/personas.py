"""What a persona means, for the /profile answer: tonight's `features_dir/personas.json` (written by the
segments stage, personaflow/pipeline/profiles.py): each persona's description and suggested action,
keyed by persona id. The per-customer rows carry only the id and name (Feast `user_segment`), so the
text is not repeated once per customer.

Re-read when the file changes (one stat per call). Memory: a few lines per persona.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from personaflow.serving.file_cache import FileCache

FILE = "personas.json"


def _texts(path: Path) -> dict[int, dict[str, Any]]:
    return {int(p["persona_id"]): p for p in json.loads(path.read_text()).get("personas", [])}


class PersonaTexts:
    def __init__(self, features_dir: Path) -> None:
        # caught mid-write by the segments stage: keep the last texts
        self._cache = FileCache(Path(features_dir) / FILE, _texts, {}, keep_on=(OSError, ValueError))

    def fields(self, persona_id: int | None) -> dict[str, str | None]:
        """`persona_description` and `persona_action` of tonight's persona `persona_id` (None: unknown)."""
        texts = self._cache.get()
        text = texts.get(int(persona_id)) if persona_id is not None else None
        return {
            "persona_description": text.get("description") if text else None,
            "persona_action": text.get("action") if text else None,
        }
