"""Validating a task imports no domain library it does not need: an ``nlp:`` section is checked by
its model (``multiticket.adapters.hf.DOMAIN_SECTION``, pydantic only) without importing transformers,
which only running the task needs; without transformers, validating still works and building the
adapter is one line naming the ``nlp`` extra. Each case runs in a fresh interpreter (``sys.modules``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object, returned."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_validating_an_nlp_task_does_not_import_transformers():
    out = _python("""
        import json, sys
        import multiticket.config
        from multiticket.paths import TASKS_DIR
        task = multiticket.config.load_task(TASKS_DIR / "austen-gpt2.yaml", ["nlp.learning_rate=0.001"])
        print(json.dumps({"section": type(task.section).__name__, "run": task.run_name,
                          "loaded": sorted(m for m in ("transformers", "datasets", "tokenizers") if m in sys.modules)}))
    """)
    assert out["section"] == "NLPSection" and out["run"].startswith("austen-gpt2-")
    assert out["loaded"] == []


def test_an_nlp_section_error_is_reported_without_importing_transformers():
    out = _python("""
        import json, sys
        from multiticket.config import load_task
        from multiticket.errors import UserError
        from multiticket.paths import TASKS_DIR
        try:
            load_task(TASKS_DIR / "austen-gpt2.yaml", ["nlp.learning_rat=0.001"])
        except UserError as exc:
            print(json.dumps({"error": str(exc), "transformers": "transformers" in sys.modules}))
    """)
    assert out["error"].endswith("nlp.learning_rat: unknown key (did you mean 'learning_rate'?)")
    assert not out["transformers"]


def test_the_light_section_is_the_adapters_own():
    pytest.importorskip("transformers")
    from multiticket.adapters.hf import DOMAIN_SECTION
    from multiticket.domains import adapter_class

    assert adapter_class("nlp").Section is DOMAIN_SECTION


def test_without_transformers_a_task_validates_and_the_adapter_names_the_extra():
    out = _python("""
        import json, sys
        sys.modules["transformers"] = None  # as if not installed: importing it fails
        from multiticket.config import load_task
        from multiticket.domains import adapter_class
        from multiticket.errors import UserError
        from multiticket.paths import TASKS_DIR
        task = load_task(TASKS_DIR / "austen-gpt2.yaml")
        try:
            adapter_class("nlp")
        except UserError as exc:
            print(json.dumps({"run": task.run_name, "error": str(exc)}))
    """)
    assert out["run"].startswith("austen-gpt2-")
    assert out["error"] == "domain: 'nlp' needs the package 'transformers' (pip install 'multiticket[nlp]')"
