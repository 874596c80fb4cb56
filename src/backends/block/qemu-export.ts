// Image formats other than raw (qcow2, qcow, vhd, qed) are read by QEMU's own
// storage engine, not by a parser of ours: qemu-storage-daemon opens the image
// and exports the disk it holds through FUSE, as a file of the disk's raw
// bytes, which the backend then uses as it uses a raw image (reads and writes,
// flushes as fdatasync and discards as punched holes, each passed on to the
// format's driver). The daemon is started at start on the main thread and
// waited for (--daemonize returns once the export is mounted, or says why it
// could not be), and stopped when the machine is.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskError } from './disk.js';
import type { DiskFormat, DiskSpec } from './disk-spec.js';

/** QEMU's block driver for each of xl's formats. */
const DRIVERS: Record<Exclude<DiskFormat, 'raw'>, string> = { qcow: 'qcow', qcow2: 'qcow2', vhd: 'vpc', qed: 'qed' };
const DAEMON = 'qemu-storage-daemon';
/** How long the daemon may take to open the image and mount its export, and to stop. */
const START_MS = 30_000;
const STOP_MS = 10_000;

export interface ImageExport {
  /** The disk's bytes, as a regular file. */
  path: string;
  /** Stops the daemon (after the last descriptor on `path` is closed) and waits until the export is gone. */
  stop(): void;
}

/** A value inside one of QEMU's comma-separated options: commas are doubled. */
const optionValue = (s: string) => s.replaceAll(',', ',,');

/** Whether a FUSE export is still mounted at `path` (mountinfo escapes spaces and the like as octal). */
function mounted(path: string): boolean {
  const escaped = path.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === escaped);
}

function isBlockDevice(path: string): boolean {
  try {
    return statSync(path).isBlockDevice();
  } catch {
    return false; // the daemon says why it cannot open it
  }
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Serves the image `spec` names (of a format other than raw) as a raw file; DiskError says why it cannot. */
export function exportImage(spec: DiskSpec & { format: Exclude<DiskFormat, 'raw'> }): ImageExport {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-disk-'));
  const path = join(dir, spec.vdev);
  const pidFile = join(dir, 'daemon.pid');
  writeFileSync(path, '');
  const readOnly = spec.readOnly ? 'on' : 'off';
  const r = spawnSync(
    DAEMON,
    [
      '--daemonize',
      '--pidfile', pidFile,
      '--blockdev', `driver=${isBlockDevice(spec.target) ? 'host_device' : 'file'},node-name=file,filename=${optionValue(spec.target)},read-only=${readOnly},discard=unmap`,
      '--blockdev', `driver=${DRIVERS[spec.format]},node-name=disk,file=file,read-only=${readOnly},discard=unmap`,
      '--export', `type=fuse,id=disk,node-name=disk,mountpoint=${optionValue(path)},writable=${spec.readOnly ? 'off' : 'on'}`,
    ],
    { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'], timeout: START_MS },
  );
  if (r.error || r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    const err = r.error as NodeJS.ErrnoException | undefined;
    if (err?.code === 'ENOENT') throw new DiskError(`disk ${spec.vdev}: a ${spec.format} image needs ${DAEMON} (Debian: apt-get install qemu-system-common)`);
    const why = err ? err.message : (r.stderr.trim().split('\n').pop() ?? '').replace(/^qemu-storage-daemon: (--\S+ \S+: )?/, '');
    throw new DiskError(`disk ${spec.vdev}: cannot open ${spec.target} as ${spec.format}: ${why || `${DAEMON} exited with status ${r.status}`}`);
  }
  const pid = Number(readFileSync(pidFile, 'utf8'));
  return {
    path,
    stop() {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // Already gone: its export went with it.
      }
      // The daemon flushes the image and unmounts as it exits.
      for (let waited = 0; waited < STOP_MS && mounted(path); waited += 20) sleep(20);
      // A daemon that would not stop keeps its mount, and the directory under it.
      if (!mounted(path)) rmSync(dir, { recursive: true, force: true });
    },
  };
}
