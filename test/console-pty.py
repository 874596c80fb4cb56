# Runs a command on a pseudo-terminal, as a person at a terminal would: waits
# for the text in argv[1] on its output, types Ctrl-C (which must reach the
# guest, not stop xenkvm), then Ctrl-] (which stops the guest), and prints
# everything the command wrote followed by "EXIT <status>".
import os
import pty
import select
import sys
import time

ready, argv = sys.argv[1].encode(), sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
out = b''


def pump(until, seconds):
    global out
    end = time.time() + seconds
    while until not in out and time.time() < end:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break


pump(ready, 30)
os.write(fd, b'\x03')
time.sleep(0.5)
os.write(fd, b'\x1d')
pump(b'exit status', 10)
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors='replace'))
print('\nEXIT', os.waitstatus_to_exitcode(status))
