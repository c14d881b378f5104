"""Suite-wide test settings.

Hypothesis's per-example deadline (200 ms by default) measures the machine, not the code: on a
shared 2-core CI runner a first example that imports a module, or one that waits for a core,
fails it. Speed is checked by the scripts under bench/, so the suite runs without deadlines.
"""

import pytest
from hypothesis import settings

settings.register_profile("recset", deadline=None)
settings.load_profile("recset")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``recset ARGV`` in process: (exit code, stdout, stderr)."""
    from recset.cli import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
