# Runs a command on a pseudo-terminal, as a person at a terminal would, and
# prints everything it wrote followed by "EXIT <status>" or "STOPPED" (a job
# the terminal stopped). Modes:
#   keys READY cmd...    in the foreground: waits for READY on the output,
#                        types Ctrl-C (which must reach the guest, not stop
#                        xenkvm), then Ctrl-] (which stops the guest)
#   background cmd...    as a background job: a process group of its own
#                        while the terminal's foreground group stays ours
import os
import pty
import select
import sys
import time

mode = sys.argv[1]
ready = sys.argv[2].encode() if mode == 'keys' else None
argv = sys.argv[3:] if mode == 'keys' else sys.argv[2:]

pid, fd = pty.fork()
if pid == 0:
    if mode == 'keys':
        os.execv(argv[0], argv)
    job = os.fork()
    if job == 0:
        os.setpgid(0, 0)
        os.execv(argv[0], argv)
    _, status = os.waitpid(job, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        print('\nSTOPPED', flush=True)
        os.kill(job, 9)
    else:
        print('\nEXIT', os.waitstatus_to_exitcode(status), flush=True)
    os._exit(0)

out = b''


def pump(until, seconds):
    global out
    end = time.time() + seconds
    while (until is None or until not in out) and time.time() < end:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk


# Generous limits: a pump ends as soon as the command closes the terminal, and in the
# nested VM on a loaded machine a guest takes minutes to get going.
if mode == 'keys':
    pump(ready, 300)
    os.write(fd, b'\x03')
    time.sleep(0.5)
    os.write(fd, b'\x1d')
    pump(None, 300)
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(out.decode(errors='replace'))
    print('\nEXIT', os.waitstatus_to_exitcode(status))
else:
    pump(None, 300)
    os.waitpid(pid, 0)
    sys.stdout.write(out.decode(errors='replace'))
