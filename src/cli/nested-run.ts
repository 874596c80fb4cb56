// `xenkvm run` on a host without /dev/kvm: xenkvm runs itself inside the nested
// VM (src/nested/), with the guest's console still this terminal (raw keys,
// Ctrl-] stops the guest), its exit status passed through, and the XenStore
// socket forwarded to the host path a person would use.
import type { Socket } from 'node:net';
import { dirname, resolve } from 'node:path';
import { projectRoot } from '../common/project-root.js';
import { UnixSocketServer } from '../common/unix-socket.js';
import { log } from '../common/log.js';
import { inForeground } from '../kvm/libc.js';
import { exitStatus } from '../machine/exit-status.js';
import { attachCommand, NestedUnavailableError, NestedVm, shellStatus } from '../nested/vm.js';
import { defaultSocketPath } from '../xenstore/socket.js';

const root = projectRoot(import.meta.url);

/** Where the xenkvm inside the VM puts its XenStore socket (the VM's own tmpfs). */
const INNER_SOCKET = '/run/xenkvm-nested/xenstored.sock';

/**
 * Set for the xenkvm inside the VM: its stdin carries a terminal's keystrokes
 * (forwarded raw), so Ctrl-] means what it means at a terminal.
 */
export const TERMINAL_CONSOLE_ENV = 'XENKVM_TERMINAL_CONSOLE';

/** `args` without the options the outer xenkvm answers itself (each as `--opt V` or `--opt=V`). */
function withoutOptions(args: string[], names: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (names.includes(a)) i++;
    else if (!names.some((n) => a.startsWith(`${n}=`))) out.push(a);
  }
  return out;
}

/**
 * Runs `xenkvm run <args>` inside the nested VM. `args` are the run command's own arguments as
 * given; `opts` the ones this side must act on.
 */
export async function runNested(args: string[], opts: { consoleLog?: string; xenstoreSocket?: string; why: string }): Promise<number> {
  process.stderr.write(`xenkvm: ${opts.why}: running inside a nested VM (QEMU, guest code emulated: slow); on a host with KVM xenkvm runs directly (--accel kvm insists on it)\n`);
  let vm: NestedVm | undefined;
  const forward = (socket: Socket) => vm!.forward(socket, INNER_SOCKET, 60_000, (e) => log('nested').warn({ why: e.message }, 'XenStore socket connection not forwarded'));
  /** Clients that came while the VM boots: forwarded once it is up. */
  const early: Socket[] = [];
  // The socket first: a path in use fails before a VM is booted for nothing.
  const forwarded = await UnixSocketServer.listen(opts.xenstoreSocket ?? defaultSocketPath(), 'XenStore', '--xenstore-socket', (socket) => {
    if (vm) forward(socket);
    else early.push(socket);
  });
  try {
    const shares = [process.cwd(), ...(opts.consoleLog ? [dirname(resolve(opts.consoleLog))] : [])].filter((p) => p !== '/');
    try {
      vm = await NestedVm.start({ root, shares });
    } catch (e) {
      if (!(e instanceof NestedUnavailableError)) throw e;
      process.stderr.write(`xenkvm: the nested VM cannot start: ${e.message}\n`);
      return exitStatus['vmm-error'];
    }
    for (const socket of early.splice(0)) forward(socket);
    const inner = [`${root}/bin/xenkvm`, 'run', ...withoutOptions(args, ['--accel', '--xenstore-socket']), '--accel', 'kvm', '--xenstore-socket', INNER_SOCKET];
    const terminal = process.stdin.isTTY === true && inForeground(0);
    const env = { ...process.env, ...(terminal ? { [TERMINAL_CONSOLE_ENV]: '1' } : {}) };
    const cmd = vm.exec(inner, { cwd: process.cwd(), env, stdout: process.stdout, stderr: process.stderr, stdin: true });
    // A background job leaves the terminal alone, as xenkvm does on real KVM.
    const background = process.stdin.isTTY === true && !terminal;
    if (terminal) process.stdin.setRawMode(true);
    const detach = attachCommand(cmd, background ? undefined : process.stdin, ['SIGINT', 'SIGTERM']);
    try {
      return shellStatus(await cmd.exit);
    } catch (e) {
      process.stderr.write(`xenkvm: ${(e as Error).message}\n`);
      return exitStatus['vmm-error'];
    } finally {
      if (terminal) process.stdin.setRawMode(false);
      detach();
    }
  } finally {
    await forwarded.close();
    await vm?.shutdown();
  }
}
