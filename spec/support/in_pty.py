#!/usr/bin/env python3
# spec/support/in_pty.py DELAY KEY ARGV...: runs ARGV in a new pseudo-terminal,
# types KEY (Python escapes: "q", "\\x03") after DELAY seconds, reads
# everything until the process ends (at most 10 s; then it is killed), and
# prints a JSON line: "out" (what the terminal showed), "code" (the exit
# status), "timeout", and whether the terminal has its echo and canonical
# mode back afterwards ("echo", "icanon"). For the live table of mtr and
# progress lines, which only a terminal gets.
# DELAY may be a comma-separated list, one delay per byte of KEY: each byte
# is then typed alone at its own time ("1.0,2.0" "dq": d at 1 s, q at 2 s).
import json, os, pty, select, sys, termios, time
key, argv = sys.argv[2].encode().decode("unicode_escape").encode("latin-1"), sys.argv[3:]
delays = [float(d) for d in sys.argv[1].split(",")]
if len(delays) == 1:
    schedule = [(delays[0], key)]
elif len(delays) == len(key):
    schedule = [(d, key[i:i + 1]) for i, d in enumerate(delays)]
else:
    sys.exit("in_pty.py: %d delays for %d keys" % (len(delays), len(key)))
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
out, start = b"", time.time()
while time.time() - start < 10:
    while schedule and time.time() - start >= schedule[0][0]:
        os.write(fd, schedule.pop(0)[1])
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
