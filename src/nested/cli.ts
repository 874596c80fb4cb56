// scripts/kvm-vm: runs one command inside a throwaway nested VM that has
// /dev/kvm, in the current directory, and passes its stdin, stdout, stderr and
// exit status through. Its own failures are one line on stderr with status 125
// (the VM could not be had) or 124 (the time limit ran out), as timeout(1) does.
import { Command, InvalidArgumentError } from 'commander';
import { resolve } from 'node:path';
import { projectRoot } from '../common/project-root.js';
import { defaultMemoryMiB, NestedUnavailableError, NestedVm, NestedVmStoppedError, attachCommand, shellStatus } from './vm.js';

export const STATUS_TIMED_OUT = 124;
export const STATUS_UNAVAILABLE = 125;

const root = projectRoot(import.meta.url);

function positive(what: string) {
  return (value: string): number => {
    if (!/^[1-9]\d*$/.test(value)) throw new InvalidArgumentError(`${what} must be a positive whole number, not "${value}"`);
    return Number(value);
  };
}

async function runCommand(command: string[], opts: { timeout?: number; memory?: number; kvmXen?: boolean; share: string[] }): Promise<number> {
  let vm: NestedVm;
  try {
    vm = await NestedVm.start({ root, shares: [process.cwd(), ...opts.share.map((p) => resolve(p))], memoryMiB: opts.memory, kernel: opts.kvmXen ? 'kvm-xen' : 'debian' });
  } catch (e) {
    if (!(e instanceof NestedUnavailableError)) throw e;
    process.stderr.write(`kvm-vm: cannot start the nested VM: ${e.message}\n`);
    return STATUS_UNAVAILABLE;
  }
  let timedOut = false;
  const timer = opts.timeout === undefined ? undefined : setTimeout(async () => {
    timedOut = true;
    process.stderr.write(`kvm-vm: what the nested VM was doing at the time limit:\n${await vm.diagnose()}\n`);
    vm.kill();
  }, opts.timeout * 1000);
  const cmd = vm.exec(command, { cwd: process.cwd(), env: process.env, stdout: process.stdout, stderr: process.stderr, stdin: true });
  const detach = attachCommand(cmd, process.stdin, ['SIGINT', 'SIGTERM', 'SIGHUP']);
  try {
    const report = await cmd.exit;
    await vm.shutdown();
    return shellStatus(report);
  } catch (e) {
    if (timedOut) {
      process.stderr.write(`kvm-vm: ${command.join(' ')} did not finish in ${opts.timeout} s; the nested VM was stopped\n`);
      return STATUS_TIMED_OUT;
    }
    vm.kill();
    if (e instanceof NestedVmStoppedError) {
      process.stderr.write(`kvm-vm: ${e.message}\n`);
      return STATUS_UNAVAILABLE;
    }
    // The command could not start in the VM (not found, not executable): as a shell says it.
    process.stderr.write(`kvm-vm: ${(e as Error).message}\n`);
    return 127;
  } finally {
    clearTimeout(timer);
    detach();
  }
}

export async function main(argv: string[]): Promise<number> {
  let status = 0;
  const program = new Command('kvm-vm')
    .description('Run a command inside a throwaway VM that has /dev/kvm (QEMU TCG, -cpu max: AMD SVM with nested paging), for hosts without KVM.\nThe host\'s root is the VM\'s root, read-only under a tmpfs overlay; the checkout, the current directory and every --share are read-write at their own paths.')
    .argument('<command...>', 'the command and its arguments (put -- before it when it has options)')
    .option('--timeout <seconds>', 'stop the VM and fail with status 124 after this long', positive('time limit'))
    .option('--memory <MiB>', `the VM's memory (default ${defaultMemoryMiB()}: a third of the host's, 2–8 GiB)`, positive('memory'))
    .option('--kvm-xen', "boot the kernel whose KVM modules are rebuilt with Xen support (CONFIG_KVM_XEN), which Debian's leaves out")
    .option('--share <dir>', 'also share this directory read-write (repeatable)', (v: string, all: string[]) => [...all, v], [])
    .addHelpText('after', '\nExit status: the command\'s own (128+N when signal N ended it); 124 the time limit ran out;\n125 the VM could not be started or stopped under the command; 127 the command could not be run.')
    .showHelpAfterError('(run scripts/kvm-vm --help for usage)')
    .exitOverride((e) => {
      throw e;
    })
    .action(async (command: string[], opts) => {
      status = await runCommand(command, opts);
    });
  program.passThroughOptions();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    const code = (e as { exitCode?: number; code?: string }).code;
    if (code === 'commander.helpDisplayed' || code === 'commander.version') return 0;
    if (code?.startsWith('commander.')) return STATUS_UNAVAILABLE;
    process.stderr.write(`kvm-vm: ${(e as Error).message}\n`);
    return STATUS_UNAVAILABLE;
  }
  return status;
}

process.exitCode = await main(process.argv);
