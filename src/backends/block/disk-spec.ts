// xl's disk specification (xl-disk-configuration(5)), as `--disk` takes it:
// comma-separated keys, flags and positional parameters (target, format,
// vdev, access, in that order, an empty one taking its default), with
// `target=` last, everything after it being the target. And the virtual
// device's number, as Xen's vbd interface numbers xvd, hd and sd disks.

export type DiskFormat = 'raw' | 'qcow' | 'qcow2' | 'vhd' | 'qed';

export interface DiskSpec {
  target: string;
  format: DiskFormat;
  /** The virtual device's name (xvda, hdc, sdb, d0p0 …) and its number, the xenbus devid. */
  vdev: string;
  devid: number;
  readOnly: boolean;
  cdrom: boolean;
  /** Whether the backend offers discard (xl's discard / no-discard; default on). */
  discard: boolean;
}

/** A disk specification that cannot be used: the message says what and why. */
export class DiskSpecError extends Error {
  override name = 'DiskSpecError';
}

const FORMATS: readonly DiskFormat[] = ['raw', 'qcow', 'qcow2', 'vhd', 'qed'];
const POSITIONAL = ['target', 'format', 'vdev', 'access'] as const;
const KEYS = new Set([...POSITIONAL, 'devtype', 'backendtype']);

export function parseDiskSpec(text: string): DiskSpec {
  const given = new Map<string, string>();
  const set = (key: string, value: string) => {
    if (given.has(key)) throw new DiskSpecError(`${key} is given twice in disk "${text}"`);
    given.set(key, value);
  };
  let discard = true;
  let rest = text;
  while (rest.length > 0) {
    const trimmed = rest.replace(/^\s+/, '');
    if (trimmed.startsWith('target=')) {
      set('target', trimmed.slice('target='.length));
      break;
    }
    const comma = trimmed.indexOf(',');
    const part = (comma < 0 ? trimmed : trimmed.slice(0, comma)).trim();
    rest = comma < 0 ? '' : trimmed.slice(comma + 1);
    const eq = part.indexOf('=');
    if (eq >= 0) {
      const key = part.slice(0, eq).trim();
      if (!KEYS.has(key)) throw new DiskSpecError(`unknown key "${key}" in disk "${text}"`);
      set(key, part.slice(eq + 1).trim());
    } else if (part === 'discard' || part === 'no-discard') {
      discard = part === 'discard';
    } else if (part === 'cdrom') {
      set('devtype', 'cdrom');
    } else {
      const next = POSITIONAL.find((k) => !given.has(k));
      if (next === undefined) throw new DiskSpecError(`too many parameters in disk "${text}": "${part}"`);
      set(next, part);
    }
  }
  const target = given.get('target') ?? '';
  if (target === '') throw new DiskSpecError(`disk "${text}" has no target (an image file or a block device)`);
  const format = (given.get('format') || 'raw') as DiskFormat;
  if (!FORMATS.includes(format)) throw new DiskSpecError(`disk "${text}": format must be one of ${FORMATS.join(', ')}, not "${format}"`);
  const vdev = given.get('vdev') ?? '';
  if (vdev === '') throw new DiskSpecError(`disk "${text}" has no vdev (the guest's name for it, e.g. xvda)`);
  const devid = vdevNumber(vdev);
  if (devid === undefined) throw new DiskSpecError(`disk "${text}": "${vdev}" is not a virtual device name xenkvm knows (xvda…, hda–hdd, sda–sdp, d0p0…)`);
  const devtype = given.get('devtype') || 'disk';
  if (devtype !== 'disk' && devtype !== 'cdrom') throw new DiskSpecError(`disk "${text}": devtype must be disk or cdrom, not "${devtype}"`);
  const backendtype = given.get('backendtype') || 'qdisk';
  if (backendtype !== 'qdisk' && backendtype !== 'phy') throw new DiskSpecError(`disk "${text}": backendtype ${backendtype} is not served by xenkvm (phy and qdisk are)`);
  const access = given.get('access') || (devtype === 'cdrom' ? 'ro' : 'rw');
  if (!['ro', 'r', 'rw', 'w'].includes(access)) throw new DiskSpecError(`disk "${text}": access must be ro or rw, not "${access}"`);
  const readOnly = access === 'ro' || access === 'r';
  if (devtype === 'cdrom' && !readOnly) throw new DiskSpecError(`disk "${text}": a cdrom is read-only`);
  return { target, format, vdev, devid, readOnly, cdrom: devtype === 'cdrom', discard };
}

/** a → 0 … z → 25, aa → 26 …: a disk's letters as xvd names count them. */
function letters(s: string): number {
  let n = 0;
  for (const c of s) n = n * 26 + (c.charCodeAt(0) - 96);
  return n - 1;
}

/** The vbd number of a virtual device name (docs/misc/vbd-interface.txt), or undefined. */
export function vdevNumber(vdev: string): number | undefined {
  const xen = (disk: number, part: number) => {
    if (disk < 16 && part < 16) return (202 << 8) | (disk << 4) | part;
    return disk < 1 << 20 && part < 256 ? ((1 << 28) | (disk << 8) | part) >>> 0 : undefined;
  };
  let m = /^xvd([a-z]{1,4})([1-9]\d*)?$/.exec(vdev);
  if (m) return xen(letters(m[1]), Number(m[2] ?? 0));
  m = /^d(0|[1-9]\d*)(?:p(0|[1-9]\d*))?$/.exec(vdev);
  if (m) return xen(Number(m[1]), Number(m[2] ?? 0));
  m = /^hd([a-d])([1-9]\d*)?$/.exec(vdev);
  if (m) {
    const disk = letters(m[1]);
    const part = Number(m[2] ?? 0);
    return part < 64 ? (([3, 3, 22, 22][disk] << 8) | ((disk & 1) << 6) | part) : undefined;
  }
  m = /^sd([a-p])([1-9]\d*)?$/.exec(vdev);
  if (m) {
    const part = Number(m[2] ?? 0);
    return part < 16 ? (8 << 8) | (letters(m[1]) << 4) | part : undefined;
  }
  return undefined;
}
