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

FILE = "personas.json"


class PersonaTexts:
    def __init__(self, features_dir: Path) -> None:
        self.path = Path(features_dir) / FILE
        self._stamp: int | None = None
        self._texts: dict[int, dict[str, Any]] = {}

    def _refresh(self) -> None:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._stamp, self._texts = None, {}
            return
        if stamp != self._stamp:
            try:
                found = json.loads(self.path.read_text())
            except (OSError, ValueError):  # caught mid-write by the segments stage: keep the last texts
                return
            self._texts = {int(p["persona_id"]): p for p in found.get("personas", [])}
            self._stamp = stamp

    def fields(self, persona_id: int | None) -> dict[str, str | None]:
        """`persona_description` and `persona_action` of tonight's persona `persona_id` (None: unknown)."""
        self._refresh()
        text = self._texts.get(int(persona_id)) if persona_id is not None else None
        return {
            "persona_description": text.get("description") if text else None,
            "persona_action": text.get("action") if text else None,
        }
