"""`dockyard --help` and `dockyard scan` start fast: the CLI's modules import no SQLAlchemy (about 0.2-0.3 s
of a start that should take less than that); the commands import it when they run."""

from __future__ import annotations

import subprocess
import sys

LAZY_MODULES = ["dockyard.cli.main", "dockyard.cli.scan", "dockyard.cli.vulndb"]


def test_cli_modules_import_no_sqlalchemy() -> None:
    code = (
        "import sys\n"
        f"for name in {LAZY_MODULES!r}:\n"
        "    __import__(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout
