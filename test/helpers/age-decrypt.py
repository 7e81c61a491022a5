#!/usr/bin/env python3
"""Decrypt an age file with the real `age` command, which reads a passphrase only from a terminal: run it on a
pseudo-terminal and type the passphrase (taken from AGE_TEST_PASSPHRASE, never argv). Usage: age-decrypt.py IN OUT"""
import os, pty, sys

src, dst = sys.argv[1], sys.argv[2]
passphrase = os.environ["AGE_TEST_PASSPHRASE"]
pid, fd = pty.fork()
if pid == 0:
    os.execvp("age", ["age", "--decrypt", "--output", dst, src])
out = b""
typed = False
while True:
    try:
        data = os.read(fd, 1024)
    except OSError:
        break
    if not data:
        break
    out += data
    if not typed and b"passphrase" in out.lower():
        os.write(fd, passphrase.encode() + b"\n")
        typed = True
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
if code != 0:
    sys.stderr.write(out.decode(errors="replace"))
sys.exit(code)
