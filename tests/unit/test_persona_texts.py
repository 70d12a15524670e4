"""/profile's persona text (personaflow/serving/personas.py): tonight's file, re-read when it changes; a
missing file or a file caught mid-write leaves the answer without text or with the last one."""

from __future__ import annotations

import json
import os

from personaflow.serving.personas import FILE, PersonaTexts


def _write(folder, personas, stamp_ns):
    path = folder / FILE
    path.write_text(json.dumps({"as_of": "2026-12-06", "personas": personas}))
    os.utime(path, ns=(stamp_ns, stamp_ns))
    return path


def test_texts_follow_tonights_file_and_survive_a_half_written_one(tmp_path):
    texts = PersonaTexts(tmp_path)
    assert texts.fields(0) == {"persona_description": None, "persona_action": None}  # no file yet
    first = [{"persona_id": 0, "name": "bulk buyers", "description": "54 units a line",
              "action": "volume tiers"}]
    path = _write(tmp_path, first, 1_000_000_000)
    assert texts.fields(0) == {"persona_description": "54 units a line", "persona_action": "volume tiers"}
    assert texts.fields(7)["persona_description"] is None and texts.fields(None)["persona_action"] is None
    second = [{"persona_id": 0, "name": "weekend buyers", "description": "81 % at weekends",
               "action": "a Saturday mail"}]
    _write(tmp_path, second, 2_000_000_000)
    assert texts.fields(0)["persona_description"] == "81 % at weekends"  # tonight's, not last night's
    path.write_text('{"personas": [')  # the segments stage mid-write
    os.utime(path, ns=(3_000_000_000, 3_000_000_000))
    assert texts.fields(0)["persona_action"] == "a Saturday mail"
