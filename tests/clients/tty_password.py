"""Types a password into `payhost <args>` on a pseudo-terminal, as a person at a terminal
would, and prints everything the terminal showed. Used by tests/readme_facts.rs to check
that the prompt appears and that the typed password is never shown.

usage: tty_password.py PAYHOST_BINARY PASSWORD ARGS...
"""
import os
import pty
import select
import sys
import time

binary, password, args = sys.argv[1], sys.argv[2], sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary] + args)
shown = b""


def read_until(done, seconds=20):
    global shown
    end = time.time() + seconds
    while time.time() < end and not done(shown):
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            shown += chunk


read_until(lambda s: b"not shown" in s)
os.write(fd, password.encode() + b"\n")
read_until(lambda s: False, seconds=20 if b"not shown" in shown else 0)
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(status))
