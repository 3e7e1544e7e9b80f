# Drives a program through a pseudo-terminal, for repl_spec.lua.
#   python3 repl_pty.py PROGRAM [ARG...] -- STEP...
# Steps: "expect:TEXT" waits (LIMIT s at most) until TEXT has been output since
# the last expect; "send:TEXT" types TEXT (\n, \x04 escapes); "sleep:SECS".
# Prints everything the program wrote, then "EXIT <status>"; on a timeout
# prints what it got and "TIMEOUT <text>" and exits 2. LIMIT (also the wait
# for the program's exit) is REPL_PTY_LIMIT seconds, 30 by default: a hang
# detector, which a prompt on a loaded machine took more than 5 s to pass.
import os, pty, select, sys, time

LIMIT = float(os.environ.get("REPL_PTY_LIMIT", "30"))

i = sys.argv.index("--")
prog, steps = sys.argv[1:i], sys.argv[i + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(prog[0], prog)

seen = b""
pending = b""

def read_some(timeout):
    global seen, pending
    r, _, _ = select.select([fd], [], [], timeout)
    if not r:
        return False
    try:
        data = os.read(fd, 4096)
    except OSError:
        return False
    seen += data
    pending += data
    return bool(data)

for step in steps:
    kind, _, arg = step.partition(":")
    text = arg.encode().decode("unicode_escape").encode()
    if kind == "expect":
        end = time.time() + LIMIT
        while text not in pending:
            left = end - time.time()
            if left <= 0 or not read_some(left):
                sys.stdout.write(seen.decode(errors="replace"))
                sys.stdout.write("\nTIMEOUT %s\n" % arg)
                os.kill(pid, 9)
                sys.exit(2)
        pending = pending[pending.index(text) + len(text):]
    elif kind == "send":
        os.write(fd, text)
    elif kind == "sleep":
        time.sleep(float(arg))

end = time.time() + LIMIT
while time.time() < end:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    read_some(0.05)
else:
    os.kill(pid, 9)
    done, status = os.waitpid(pid, 0)
while read_some(0):
    pass
sys.stdout.write(seen.decode(errors="replace"))
sys.stdout.write("\nEXIT %d\n" % (os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)))
