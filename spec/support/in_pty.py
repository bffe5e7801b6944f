#!/usr/bin/env python3
# spec/support/in_pty.py DELAY KEY ARGV...: runs ARGV in a new pseudo-terminal,
# types KEY (Python escapes: "q", "\\x03") after DELAY seconds, reads
# everything until the process ends (at most 10 s; then it is killed), and
# prints a JSON line: "out" (what the terminal showed), "code" (the exit
# status), "timeout", and whether the terminal has its echo and canonical
# mode back afterwards ("echo", "icanon"). For the live table of mtr and
# progress lines, which only a terminal gets.
import json, os, pty, select, sys, termios, time
delay, key, argv = float(sys.argv[1]), sys.argv[2].encode().decode("unicode_escape").encode(), sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
out, typed, start = b"", False, time.time()
while time.time() - start < 10:
    if not typed and time.time() - start >= delay:
        os.write(fd, key)
        typed = True
    r, _, _ = select.select([fd], [], [], 0.05)
    if not r:
        continue
    try:
        data = os.read(fd, 65536)
    except OSError:        # EIO: the child and its terminal are gone
        break
    if not data:
        break
    out += data
code, timeout = None, False
while code is None and time.time() - start < 10:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        code = os.waitstatus_to_exitcode(status)
    else:
        time.sleep(0.02)
lflag = termios.tcgetattr(fd)[3]
if code is None:
    timeout = True
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print(json.dumps({"out": out.decode("utf-8", "replace"), "code": code, "timeout": timeout,
                  "echo": bool(lflag & termios.ECHO), "icanon": bool(lflag & termios.ICANON)}))
