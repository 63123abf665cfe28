"""``python -m ddp.server PROGRAM ARGS...``: run a Django program with eventlet patched first.

``ddpserver`` re-executes itself through this module (see
:func:`ddp.server.eventlet_driver.exec_patched`); ``PROGRAM`` is ``-m MODULE`` or a
script path such as ``manage.py``.
"""

import os
import runpy
import sys

from ddp.server import eventlet_driver

eventlet_driver.monkey_patch()

from ddp.server import reloader  # noqa: E402  (after patching, as everything else)


def main():
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
        runpy.run_path(args[0], run_name="__main__")


args = sys.argv[1:]
if not args:
    sys.exit("usage: python -m ddp.server (-m MODULE | SCRIPT) [ARGS...]")
if reloader.in_child():
    reloader.run_child(main)
else:
    main()
