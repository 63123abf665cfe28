"""``ddpserver`` restarts itself when a Python file of the project changes, as ``runserver`` does.

Two processes, as with Django's autoreloader. The one started (:func:`run_parent`) only
starts the server again and again: it opens no database connection, makes no replication
slot and listens on nothing. Each child (:func:`in_child`) is a whole ``ddpserver``,
eventlet-patched first (``python -m ddp.server``, see :func:`patched_argv`), which also
watches the files with Django's own reloader (:func:`watch_files`), closes its clients when
one changes and exits with status 3, Django's "start me again". A child that cannot start
(an error in the project, a failed system check) says why and waits for the next change
(:func:`run_child`, :func:`wait_for_change`), as ``runserver`` does, rather than end the
reloader.

The parent, having loaded the settings, holds its own handle on an embedded PostgreSQL
(``ddp.testing.database``): a child that exits never leaves it the last user, so the
database runs on across reloads.

This module imports no eventlet: the parent never needs it, and in the child the stdlib it
uses (``time.sleep``, ``threading``) is already green.
"""

import logging
import os
import signal
import subprocess
import sys
import threading
import traceback

from django.utils import autoreload

logger = logging.getLogger("ddp.server")

#: The status with which a child asks to be started again (Django's too).
RESTART = 3


def in_child():
    """Whether this process is a server started by the reloader (Django's environment flag)."""
    return os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true"


def patched_argv():
    """The command line that runs this program again, with the same interpreter options and
    arguments, through ``python -m ddp.server`` so that eventlet patches before anything else.

    ``PROGRAM`` is ``-m MODULE`` when Python was started so (``python -m django``), else the
    script (``manage.py``, ``django-admin``), made absolute.
    """
    import __main__

    spec = getattr(__main__, "__spec__", None)
    program = ["-m", spec.name] if spec is not None else [os.path.abspath(sys.argv[0])]
    options = [f"-W{option}" for option in sys.warnoptions]
    options += [
        f"-X{key}" if value is True else f"-X{key}={value}" for key, value in sys._xoptions.items()
    ]
    return [sys.executable, *options, "-m", "ddp.server", *program, *sys.argv[1:]]


def run_parent():
    """Run the server in a child process, again each time it exits with :data:`RESTART`;
    return the status to exit with (the child's, or 128 + the signal that ended it).

    The child shares this process's group and terminal, so that a breakpoint in the project
    can read the keyboard and Ctrl-C reaches it directly: SIGINT is not passed on (the child
    would take it for a second Ctrl-C, "stop at once"). SIGTERM, which is sent to this
    process alone, is passed on: the child stops gracefully, and a second one at once.
    """
    child = None
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True
        if signum == signal.SIGTERM and child is not None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    environ = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
    while True:
        child = subprocess.Popen(patched_argv(), env=environ, close_fds=False)
        if stopping:  # signalled before there was a child to pass it on to
            child.send_signal(signal.SIGTERM)
        status = child.wait()
        if status != RESTART:
            return 128 - status if status < 0 else status
        if stopping:
            return 0


def watch_files():
    """Return once a file that Django's autoreloader watches has changed: every Python module
    loaded, plus what ``autoreload_started`` receivers add (template folders...).

    Run in a green thread of the server; Django's reloader sleeps with ``time.sleep`` and
    ends with ``sys.exit(3)``, both fine there. A change that a ``file_changed`` receiver
    handles itself (a template) is no reason to restart, and it goes on watching.
    """
    reloader = autoreload.get_reloader()
    logger.info("Watching for file changes with %s", type(reloader).__name__)
    try:
        # The main thread is the one that serves: Django watches as long as it is alive.
        reloader.run(threading.main_thread())
    except SystemExit as exit:
        if exit.code != RESTART:
            raise


def run_child(main):
    """Run ``main()``, the program, in a server the reloader started. If the project fails
    to load (a syntax error, say), show why and :func:`wait_for_change`, as ``runserver``
    does. A wrong command line still ends it: only another command fixes that.
    """
    try:
        autoreload.check_errors(main)()  # notes the file that failed to load, to watch it
    except Exception:
        traceback.print_exc()
        wait_for_change()


def wait_for_change():
    """The server cannot start until the project is fixed: wait for a file to change, every
    module loaded and any that failed to load, then exit with :data:`RESTART`, so that the
    save that fixes it starts the server again."""
    sys.stderr.write("ddpserver cannot serve: waiting for a file to change to start again\n")
    sys.stderr.flush()
    autoreload.get_reloader().run_loop()  # ends with sys.exit(RESTART) at the change
