"""``ddp.protocol`` is sans-I/O: importing it loads no Django, eventlet, psycopg2, socket or thread.

Checked in a fresh interpreter, because this test process has long imported all of them.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.quick

ROOT = Path(__file__).resolve().parents[2]

# Compare with what the bare interpreter had already loaded, so a site hook that loads
# threading at start-up does not make this fail for a reason outside ddp.protocol.
PROBE = """
import json, sys
before = set(sys.modules)
import ddp.protocol
print(json.dumps({"loaded": sorted(sys.modules), "new": sorted(set(sys.modules) - before)}))
"""

NEVER = ("django", "eventlet", "psycopg2")
NO_IO = ("socket", "ssl", "select", "selectors", "subprocess", "threading", "asyncio", "_thread")


def _import_in_a_fresh_interpreter():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def _roots(names):
    return {name.partition(".")[0] for name in names}


def test_protocol_imports_no_framework():
    assert not _roots(_import_in_a_fresh_interpreter()["loaded"]) & set(NEVER)


def test_protocol_imports_no_io_clock_or_threads():
    assert not _roots(_import_in_a_fresh_interpreter()["new"]) & set(NO_IO)
